from __future__ import annotations

from django.db import transaction
from django.db.models import Prefetch
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from imagery.purge import delete_with_blobs
from picterra.api.viewsets import OrganizationScopedMixin, OrganizationScopedViewSet
from picterra.organizations.api.serializers import (
    ApiKeySerializer,
    IssuedApiKeySerializer,
    MembershipSerializer,
    OrganizationSerializer,
    ProjectSerializer,
)
from picterra.organizations.models import ApiKey, Membership, Organization, Project


class OrganizationViewSet(OrganizationScopedViewSet):
    """Organizations the caller belongs to. Creating one makes the caller its owner."""

    queryset = Organization.objects.all()
    serializer_class = OrganizationSerializer
    owner_only_actions = ("update", "partial_update", "destroy")
    ordering_fields = ["name", "created_at"]

    def get_queryset(self):
        return (
            super()
            .get_queryset()
            .prefetch_related(Prefetch("memberships", queryset=Membership.objects.filter(user=self.request.user)))
        )

    @transaction.atomic
    def perform_create(self, serializer):
        organization = serializer.save()
        Membership.objects.create(organization=organization, user=self.request.user, role=Membership.Role.OWNER)

    def perform_destroy(self, instance):
        delete_with_blobs(instance)  # everything it owns goes, blobs included (purged after commit)


class MembershipViewSet(OrganizationScopedViewSet):
    """Members of the caller's organizations; only owners add, change or remove members."""

    queryset = Membership.objects.all()
    serializer_class = MembershipSerializer
    owner_only_actions = ("update", "partial_update", "destroy")
    filterset_fields = ["organization", "role"]
    select_related = ("user", "organization")

    def perform_update(self, serializer):
        self._keep_an_owner(serializer.instance, new_role=serializer.validated_data.get("role"))
        serializer.save()

    def perform_destroy(self, instance):
        self._keep_an_owner(instance, new_role=None)
        instance.delete()

    @staticmethod
    def _keep_an_owner(membership: Membership, new_role: str | None) -> None:
        if membership.role != Membership.Role.OWNER or new_role == Membership.Role.OWNER:
            return
        others = Membership.objects.filter(organization=membership.organization, role=Membership.Role.OWNER)
        if not others.exclude(pk=membership.pk).exists():
            raise serializers.ValidationError("An organization needs at least one owner.")


class ProjectViewSet(OrganizationScopedViewSet):
    queryset = Project.objects.all()
    serializer_class = ProjectSerializer
    owner_only_actions = ("destroy",)
    filterset_fields = ["organization"]
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]

    def perform_create(self, serializer):
        serializer.save(created_by=self.request.user)

    def perform_destroy(self, instance):
        delete_with_blobs(instance)  # its images' originals and COGs are purged after commit


class ApiKeyViewSet(
    OrganizationScopedMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """The caller's own API keys. The key is shown once, on creation; DELETE revokes it.

    Only a signed-in session creates or revokes keys: a key that could mint keys would outlive its own revocation
    through its children, and a leaked key could revoke its owner's others.
    """

    serializer_class = ApiKeySerializer

    queryset = ApiKey.objects.all()

    def get_queryset(self):
        return super().get_queryset().filter(user=self.request.user, revoked_at__isnull=True)

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if self.action in ("create", "destroy") and isinstance(request.auth, ApiKey):
            raise PermissionDenied("API keys are created and revoked in the web app (signed in), not with an API key.")

    @extend_schema(responses={201: IssuedApiKeySerializer})
    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        key, raw = ApiKey.issue(
            request.user, serializer.validated_data["organization"], serializer.validated_data.get("name", "")
        )
        data = IssuedApiKeySerializer(key, context=self.get_serializer_context()).data
        data["key"] = raw
        return Response(data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        instance.revoked_at = timezone.now()
        instance.save(update_fields=["revoked_at"])
