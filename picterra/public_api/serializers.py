"""Request bodies of the public API (validated) and response shapes (for its OpenAPI schema)."""

from __future__ import annotations

from django.contrib.gis.geos import Point
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from detectors.api.serializers import HexColorField
from detectors.models import Detector

# --- requests --------------------------------------------------------------------------------------------------------


class RasterUploadSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=300)
    multispectral = serializers.BooleanField(default=True)
    folder_id = serializers.CharField(required=False, allow_null=True)
    captured_at = serializers.DateTimeField(required=False, allow_null=True)
    identity_key = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    cloud_coverage = serializers.IntegerField(min_value=0, max_value=100, required=False, allow_null=True)
    user_tag = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)


class RasterEditSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=300, required=False)
    folder_id = serializers.CharField(required=False)
    captured_at = serializers.DateTimeField(required=False, allow_null=True)
    identity_key = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)
    multispectral_band_specification = serializers.JSONField(required=False)
    cloud_coverage = serializers.IntegerField(min_value=0, max_value=100, required=False, allow_null=True)
    user_tag = serializers.CharField(max_length=200, required=False, allow_null=True, allow_blank=True)


class ConfigurationSerializer(serializers.Serializer):
    detection_type = serializers.ChoiceField(Detector.DetectionType.choices, required=False)
    output_type = serializers.ChoiceField(Detector.OutputType.choices, required=False)
    training_steps = serializers.IntegerField(min_value=500, max_value=40_000, required=False)
    backbone = serializers.ChoiceField(Detector.Backbone.choices, required=False)
    tile_size = serializers.IntegerField(min_value=128, max_value=1024, required=False)
    background_sample_ratio = serializers.FloatField(min_value=0, max_value=1, required=False)


class DetectorWriteSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    configuration = ConfigurationSerializer(required=False)


class TrainingRasterSerializer(serializers.Serializer):
    raster_id = serializers.CharField()


class AnnotationsCommitSerializer(serializers.Serializer):
    class_id = serializers.CharField(required=False, allow_null=True)


class RunDetectorSerializer(serializers.Serializer):
    raster_id = serializers.CharField()
    secondary_raster_id = serializers.CharField(required=False, allow_null=True)


class VectorLayerEditSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False, allow_blank=True)
    color = HexColorField(required=False)


@extend_schema_field(
    {
        "type": "object",
        "description": "GeoJSON Point in longitude/latitude.",
        "properties": {
            "type": {"type": "string", "enum": ["Point"]},
            "coordinates": {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2},
        },
        "required": ["type", "coordinates"],
    }
)
class PointField(serializers.Field):
    default_error_messages = {"invalid": "A GeoJSON Point with [longitude, latitude] is required."}

    def to_internal_value(self, data) -> Point:
        coordinates = data.get("coordinates") if isinstance(data, dict) else None
        if (
            not isinstance(data, dict)
            or data.get("type") != "Point"
            or not isinstance(coordinates, list)
            or len(coordinates) < 2
            or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in coordinates[:2])
        ):
            self.fail("invalid")
        lon, lat = coordinates[:2]
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise serializers.ValidationError("The point is outside longitude/latitude range.")
        return Point(lon, lat, srid=4326)

    def to_representation(self, value) -> dict:
        return {"type": "Point", "coordinates": [value.x, value.y]}


class MarkerCreateSerializer(serializers.Serializer):
    marker = PointField()
    text = serializers.CharField(required=False, allow_blank=True, max_length=10_000)


class FolderCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=200)


class GranteeSerializer(serializers.Serializer):
    type = serializers.ChoiceField(["user", "organization"])
    id = serializers.CharField()


class GrantSerializer(serializers.Serializer):
    grantee = GranteeSerializer()
    role = serializers.ChoiceField(["viewer", "editor"])


class GrantsSerializer(serializers.Serializer):
    grants = GrantSerializer(many=True)


# --- responses (documentation and schema checks only) -----------------------------------------------------------------


class OperationReferenceSerializer(serializers.Serializer):
    operation_id = serializers.CharField()
    poll_interval = serializers.FloatField()


class OperationSerializer(serializers.Serializer):
    id = serializers.CharField()
    type = serializers.CharField()
    status = serializers.ChoiceField(["running", "success", "failed"])
    results = serializers.JSONField(allow_null=True)
    errors = serializers.JSONField(allow_null=True)
    metadata = serializers.JSONField()
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)


class GeoJSONUploadTicketSerializer(serializers.Serializer):
    upload_id = serializers.CharField()
    upload_url = serializers.URLField()


class RasterUploadTicketSerializer(serializers.Serializer):
    raster_id = serializers.CharField()
    upload_url = serializers.URLField()


class DownloadSerializer(serializers.Serializer):
    download_url = serializers.URLField()
    expiration = serializers.IntegerField()


class UserInfoSerializer(serializers.Serializer):
    user_id = serializers.CharField()
    username = serializers.CharField()
    organization_id = serializers.CharField()
    organization_name = serializers.CharField()


class RasterSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    status = serializers.ChoiceField(["processing", "ready", "failed"])
    error = serializers.CharField(allow_null=True)
    folder_id = serializers.CharField()
    captured_at = serializers.DateTimeField(allow_null=True)
    identity_key = serializers.CharField(allow_null=True)
    user_tag = serializers.CharField(allow_null=True)
    cloud_coverage = serializers.IntegerField(allow_null=True)
    multispectral = serializers.BooleanField()
    type = serializers.CharField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    bands_count = serializers.IntegerField(allow_null=True)
    multispectral_band_specification = serializers.JSONField()
    tms_url = serializers.CharField(allow_null=True)
    tiles_min_zoom = serializers.IntegerField(allow_null=True)
    tiles_max_zoom = serializers.IntegerField(allow_null=True)
    footprint = serializers.JSONField(allow_null=True)


class ClassSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    color = serializers.CharField()


class PublicDetectorSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    is_runnable = serializers.BooleanField()
    is_shared = serializers.BooleanField()
    user_tag = serializers.CharField(allow_null=True)
    type = serializers.CharField()
    folder_id = serializers.CharField(allow_null=True)
    classes = ClassSerializer(many=True)
    configuration = ConfigurationSerializer()


class VectorLayerSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    color = serializers.CharField()
    count = serializers.IntegerField()
    raster_id = serializers.CharField()
    detector_id = serializers.CharField(allow_null=True)
    created_at = serializers.DateTimeField()


class MarkerSerializer(serializers.Serializer):
    id = serializers.CharField()
    raster_id = serializers.CharField()
    detector_id = serializers.CharField(allow_null=True)
    marker = serializers.JSONField()
    text = serializers.CharField(allow_blank=True)
    created_at = serializers.DateTimeField()


class FolderSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    created_at = serializers.DateTimeField()


def _page(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    return type(
        name,
        (serializers.Serializer,),
        {
            "count": serializers.IntegerField(),
            "page_size": serializers.IntegerField(),
            "next": serializers.URLField(allow_null=True),
            "previous": serializers.URLField(allow_null=True),
            "results": item(many=True),
        },
    )


RasterPageSerializer = _page(RasterSerializer, "RasterPageSerializer")
DetectorPageSerializer = _page(PublicDetectorSerializer, "DetectorPageSerializer")
VectorLayerPageSerializer = _page(VectorLayerSerializer, "VectorLayerPageSerializer")
MarkerPageSerializer = _page(MarkerSerializer, "MarkerPageSerializer")
FolderPageSerializer = _page(FolderSerializer, "FolderPageSerializer")
