"""Organization scoping, done once: every API view sees only the caller's organizations' rows."""

from __future__ import annotations

from rest_framework import serializers, viewsets
from rest_framework.exceptions import PermissionDenied


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
    from picterra.organizations.models import ApiKey

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
