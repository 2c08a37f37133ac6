"""Who owns what: organizations, their members, their projects and API keys.

Every object in the platform belongs to exactly one organization; `OrganizationScopedQuerySet`
is the one place that turns "this user" into "the rows this user may see".
"""

from __future__ import annotations

import hashlib
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone


class OrganizationScopedQuerySet(models.QuerySet):
    """Rows visible to a user: those of the organizations the user is a member of.

    Each model names the path from itself to its organization in `organization_lookup`.
    """

    def for_user(self, user) -> OrganizationScopedQuerySet:
        if not user or not user.is_authenticated:
            return self.none()
        return self.filter(**{f"{self._prefix()}memberships__user": user})

    def owned_by(self, user) -> OrganizationScopedQuerySet:
        """Rows in organizations where the user is an owner (for destructive actions)."""
        if not user or not user.is_authenticated:
            return self.none()
        prefix = self._prefix()
        return self.filter(**{f"{prefix}memberships__user": user, f"{prefix}memberships__role": Membership.Role.OWNER})

    def _prefix(self) -> str:
        lookup = self.model.organization_lookup
        return f"{lookup}__" if lookup else ""


class Organization(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)

    organization_lookup = ""
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # The public API keeps GeoJSON upload tickets under ``public-api/uploads/<organization>/`` (its
    # ``upload_key``): they go with the organization (``imagery.purge``, ``blob_orphans``).
    blob_namespaces = ("public-api/uploads/",)

    def blob_prefixes(self) -> list[str]:
        return [f"public-api/uploads/{self.pk}/"]


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        MEMBER = "member", "Member"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    organization_lookup = "organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="unique_membership")]
        ordering = ["organization", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"


class Project(models.Model):
    """A folder of images and detectors (a "folder" in the public API)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    organization_lookup = "organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name


def _hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiKeyQuerySet(OrganizationScopedQuerySet):
    def authenticate(self, raw: str) -> ApiKey | None:
        key = (
            self.select_related("user")
            .filter(key_hash=_hash_key(raw), revoked_at__isnull=True, user__is_active=True)
            # A key is scoped to one organization: it stops working when its user leaves it.
            .filter(organization__memberships__user=models.F("user"))
            .first()
        )
        if key is not None:
            # One UPDATE, not a save(): authentication must not race with a concurrent revoke.
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=timezone.now())
        return key


class ApiKey(models.Model):
    """A personal key for scripts; only its SHA-256 is stored, the key itself is shown once."""

    PREFIX_LENGTH = 8

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=200, blank=True, default="")
    prefix = models.CharField(max_length=PREFIX_LENGTH)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    organization_lookup = "organization"
    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user, organization: Organization, name: str = "") -> tuple[ApiKey, str]:
        """Create a key and return it with its one-time plain text."""
        raw = secrets.token_urlsafe(32)
        key = cls.objects.create(
            user=user, organization=organization, name=name, prefix=raw[: cls.PREFIX_LENGTH], key_hash=_hash_key(raw)
        )
        return key, raw

    @classmethod
    def issue_for_username(cls, username: str, name: str = "") -> tuple[ApiKey, str]:
        """For operators: a key for a user, creating the user and a personal organization when missing."""
        from django.contrib.auth import get_user_model

        user, _ = get_user_model().objects.get_or_create(username=username)
        membership = (
            Membership.objects.filter(user=user).order_by("-role", "created_at").select_related("organization").first()
        )
        if membership is None:
            organization = Organization.objects.create(name=f"{username}'s organization")
            Membership.objects.create(organization=organization, user=user, role=Membership.Role.OWNER)
        else:
            organization = membership.organization
        return cls.issue(user, organization, name)
