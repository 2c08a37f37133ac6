from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from picterra.api.viewsets import ScopedPrimaryKeyRelatedField
from picterra.organizations.models import ApiKey, Membership, Organization, Project


class OrganizationSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = ["id", "name", "role", "created_at"]
        read_only_fields = ["id", "created_at"]

    def get_role(self, organization: Organization) -> str | None:
        user = self.context["request"].user
        membership = next((m for m in organization.memberships.all() if m.user_id == user.id), None)
        return membership.role if membership else None


class MembershipSerializer(serializers.ModelSerializer):
    organization = ScopedPrimaryKeyRelatedField(queryset=Organization.objects.all())
    username = serializers.SlugRelatedField(
        source="user", slug_field="username", queryset=get_user_model().objects.all()
    )

    class Meta:
        model = Membership
        fields = ["id", "organization", "username", "role", "created_at"]
        read_only_fields = ["id", "created_at"]

    def validate(self, attrs):
        request = self.context["request"]
        organization = attrs.get("organization") or self.instance.organization
        if not Organization.objects.owned_by(request.user).filter(pk=organization.pk).exists():
            raise serializers.ValidationError("Only an owner of the organization can manage its members.")
        if self.instance is None and Membership.objects.filter(organization=organization, user=attrs["user"]).exists():
            raise serializers.ValidationError("This user is already a member of the organization.")
        return attrs


class ProjectSerializer(serializers.ModelSerializer):
    organization = ScopedPrimaryKeyRelatedField(queryset=Organization.objects.all())

    class Meta:
        model = Project
        fields = ["id", "organization", "name", "description", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate_organization(self, organization):
        if self.instance is not None and organization != self.instance.organization:
            raise serializers.ValidationError("A project cannot move to another organization.")
        return organization


class ApiKeySerializer(serializers.ModelSerializer):
    organization = ScopedPrimaryKeyRelatedField(queryset=Organization.objects.all())

    class Meta:
        model = ApiKey
        fields = ["id", "name", "organization", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = ["id", "prefix", "created_at", "last_used_at", "revoked_at"]


class IssuedApiKeySerializer(ApiKeySerializer):
    key = serializers.CharField(read_only=True, help_text="The key itself: shown only in this response.")

    class Meta(ApiKeySerializer.Meta):
        fields = ApiKeySerializer.Meta.fields + ["key"]
