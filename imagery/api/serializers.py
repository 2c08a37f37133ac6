from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from imagery.models import Image
from picterra.api.fields import GeoJSONPolygonField
from picterra.api.viewsets import ScopedPrimaryKeyRelatedField
from picterra.organizations.models import Project


class ImageSerializer(serializers.ModelSerializer):
    project = ScopedPrimaryKeyRelatedField(queryset=Project.objects.all())
    footprint = GeoJSONPolygonField(read_only=True, allow_null=True)

    class Meta:
        model = Image
        fields = [
            "id",
            "project",
            "name",
            "status",
            "error",
            "created_at",
            "updated_at",
            "captured_at",
            "original_filename",
            "file_size",
            "width",
            "height",
            "band_count",
            "dtype",
            "crs",
            "gsd",
            "bounds",
            "footprint",
            "nodata",
            "is_georeferenced",
            "display_bands",
            "rescale",
            "cog_version",
        ]
        read_only_fields = [
            "cog_version",
            "id",
            "status",
            "error",
            "created_at",
            "updated_at",
            "original_filename",
            "file_size",
            "width",
            "height",
            "band_count",
            "dtype",
            "crs",
            "gsd",
            "bounds",
            "footprint",
            "nodata",
            "is_georeferenced",
        ]

    def validate_project(self, project):
        if self.instance is not None and project.organization_id != self.instance.project.organization_id:
            raise serializers.ValidationError("An image cannot move to a project of another organization.")
        return project

    def validate_display_bands(self, bands):
        count = self.instance.band_count if self.instance else None
        if not isinstance(bands, list) or len(bands) != 3 or not all(isinstance(b, int) for b in bands):
            raise serializers.ValidationError("Give three band numbers (red, green, blue), e.g. [1, 2, 3].")
        if count and not all(1 <= b <= count for b in bands):
            raise serializers.ValidationError(f"Band numbers must be between 1 and {count}.")
        return bands

    def validate_rescale(self, ranges):
        count = self.instance.band_count if self.instance else None
        valid = isinstance(ranges, list) and all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(v, int | float) for v in r) and r[0] < r[1]
            for r in ranges
        )
        if not valid:
            raise serializers.ValidationError("Give one [min, max] pair per band, with min < max.")
        if count and len(ranges) != count:
            raise serializers.ValidationError(f"Give exactly {count} [min, max] pairs, one per band.")
        return ranges


class ImageUploadSerializer(serializers.Serializer):
    """A small image sent as multipart form data; large files use the signed-URL upload."""

    project = ScopedPrimaryKeyRelatedField(queryset=Project.objects.all())
    file = serializers.FileField()
    name = serializers.CharField(max_length=300, required=False)
    captured_at = serializers.DateTimeField(required=False)

    def validate_file(self, file):
        limit = settings.MAX_MULTIPART_UPLOAD_MB * 1024 * 1024
        if file.size > limit:
            raise serializers.ValidationError(
                f"The file is larger than {settings.MAX_MULTIPART_UPLOAD_MB} MB; use the signed-URL upload for it."
            )
        if file.size == 0:
            raise serializers.ValidationError("The file is empty.")
        return file


class UploadStartSerializer(serializers.Serializer):
    project = ScopedPrimaryKeyRelatedField(queryset=Project.objects.all())
    filename = serializers.CharField(max_length=300, help_text="The file's name, e.g. orthophoto.tif.")
    name = serializers.CharField(max_length=300, required=False)
    captured_at = serializers.DateTimeField(required=False)


class UploadTicketSerializer(serializers.Serializer):
    image = ImageSerializer()
    upload_url = serializers.URLField(help_text="PUT the file's bytes here, with Content-Length; no API key.")
    expires_at = serializers.DateTimeField()
