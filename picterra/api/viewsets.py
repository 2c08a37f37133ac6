"""Organization scoping, done once: every API view sees only the caller's organizations' rows."""

from __future__ import annotations

from django.db import transaction
from rest_framework import serializers, status, viewsets
from rest_framework.exceptions import APIException, PermissionDenied

from picterra.organizations.models import ApiKey


class OrganizationScopedMixin:
    """For generic viewsets: the queryset is `model.objects.for_user(user)`.

    Objects of other organizations are invisible (404, never 403), so their existence does not leak.
    `owner_only_actions` lists actions that need the owner role in the object's organization.
    """

    owner_only_actions: tuple[str, ...] = ()
    select_related: tuple[str, ...] = ()

    def get_queryset(self):
        model = self.queryset.model
        queryset = scoped_to_key(model.objects.for_user(self.request.user), self.request)
        if self.select_related:
            queryset = queryset.select_related(*self.select_related)
        return queryset

    def check_object_permissions(self, request, obj) -> None:
        super().check_object_permissions(request, obj)
        if self.action in self.owner_only_actions:
            model = type(obj)
            if not model.objects.owned_by(request.user).filter(pk=obj.pk).exists():
                raise PermissionDenied("Only an owner of the organization can do this.")


def scoped_to_key(queryset, request):
    """A request made with an API key sees only the key's organization, even if its user has others."""
    key = getattr(request, "auth", None)
    if not isinstance(key, ApiKey):
        return queryset
    lookup = queryset.model.organization_lookup
    return queryset.filter(**{f"{lookup}_id" if lookup else "pk": key.organization_id})


class OrganizationScopedViewSet(OrganizationScopedMixin, viewsets.ModelViewSet):
    pass


class ReadOnlyOrganizationScopedViewSet(OrganizationScopedMixin, viewsets.ReadOnlyModelViewSet):
    pass


class ScopedPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key the caller may only point at objects of their own organizations."""

    def get_queryset(self):
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return scoped_to_key(self.queryset.model.objects.for_user(user), request)


class PreconditionFailed(APIException):
    status_code = status.HTTP_412_PRECONDITION_FAILED
    default_detail = "This was changed elsewhere (another tab or another person) since you loaded it."
    default_code = "precondition_failed"


class ConditionalWriteMixin:
    """Optimistic concurrency for shapes edited from several tabs: responses carry an `ETag` made from the
    row's `updated_at`; a write sent with `If-Match` applies only if the row is unchanged since, else 412 with
    a plain message, so a stale tab never overwrites a newer edit silently. Without `If-Match` the write
    applies (last write wins), as API clients expect."""

    @staticmethod
    def etag(updated_at: str) -> str:
        """The ETag of a row whose serialized `updated_at` is this (the form responses carry)."""
        return f'"{updated_at}"'

    def get_object(self):
        obj = super().get_object()
        expected = self.request.headers.get("If-Match")
        if self.request.method in ("PUT", "PATCH", "DELETE") and expected and expected != "*":
            # Re-read under a row lock so two writes with the same ETag cannot both pass.
            obj = type(obj).objects.select_for_update().get(pk=obj.pk)
            if expected.removeprefix("W/") != self.etag(serializers.DateTimeField().to_representation(obj.updated_at)):
                raise PreconditionFailed()
        return obj

    def update(self, request, *args, **kwargs):
        with transaction.atomic():
            response = super().update(request, *args, **kwargs)
        return self._with_etag(response)

    def destroy(self, request, *args, **kwargs):
        with transaction.atomic():
            return super().destroy(request, *args, **kwargs)

    def retrieve(self, request, *args, **kwargs):
        return self._with_etag(super().retrieve(request, *args, **kwargs))

    def create(self, request, *args, **kwargs):
        return self._with_etag(super().create(request, *args, **kwargs))

    def _with_etag(self, response):
        updated = (response.data or {}).get("updated_at") if isinstance(response.data, dict) else None
        if updated:
            response["ETag"] = self.etag(updated)
        return response
