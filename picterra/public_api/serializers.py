"""Request bodies of the public API (validated) and its response shapes (rendered, and documented in its schema)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.gis.geos import Point
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from detectors.api.serializers import HexColorField
from detectors.models import Detector
from imagery.models import Image
from picterra.public_api.models import Marker, Operation, VectorLayer
from picterra.public_api.translate import (
    band_specification,
    details_of,
    detector_classes,
    is_runnable,
    raster_footprint,
    raster_status,
    raster_tms_url,
    raster_zooms,
    signed_results,
)

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
    kind = serializers.ChoiceField(
        Detector.Kind.choices,
        required=False,
        help_text="`change`: compares two images of the same place at two dates (set when created).",
    )
    configuration = ConfigurationSerializer(required=False)


class TrainingRasterSerializer(serializers.Serializer):
    raster_id = serializers.CharField()
    secondary_raster_id = serializers.CharField(
        required=False, allow_null=True, help_text="A change detector's second date of this raster."
    )


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


# --- responses ---------------------------------------------------------------------------------------------------
# Each shape is declared once: the OpenAPI schema documents these classes and the views render their answers
# with them. Where the API's value is not an attribute of the row, `compute_<field>(row)` gives it (using
# translate.py, which maps our rows to the API's concepts).


# (Serializer docstrings would become the schema's component descriptions: these classes have comments.)
class ResponseSerializer(serializers.Serializer):
    # A response shape: each field renders `compute_<field>(row)` if the serializer has it, else the row's
    # attribute (its `source`), like DRF does; None stays None.

    def to_representation(self, instance) -> dict[str, Any]:
        rendered = {}
        for field in self._readable_fields:
            compute = getattr(self, f"compute_{field.field_name}", None)
            value = compute(instance) if compute is not None else field.get_attribute(instance)
            rendered[field.field_name] = None if value is None else field.to_representation(value)
        return rendered


class IsoDateTimeField(serializers.DateTimeField):
    """A date and time as Python's `isoformat()` writes it (`+00:00`, where DRF would write `Z`)."""

    def to_representation(self, value) -> str | None:
        return value.isoformat() if value else None


class OperationReferenceSerializer(ResponseSerializer):
    operation_id = serializers.CharField(source="pk")
    poll_interval = serializers.FloatField()

    def compute_poll_interval(self, operation: Operation) -> float:
        return settings.PUBLIC_API_POLL_INTERVAL_S


class OperationSerializer(ResponseSerializer):
    # Renders an operation as it is stored: settle it first (`translate.settled`).

    id = serializers.CharField(source="pk")
    type = serializers.CharField(source="kind")
    status = serializers.ChoiceField(["running", "success", "failed"])
    results = serializers.JSONField(allow_null=True)
    errors = serializers.JSONField(allow_null=True)
    metadata = serializers.JSONField()
    created_at = IsoDateTimeField()
    finished_at = IsoDateTimeField(allow_null=True)

    def compute_results(self, operation: Operation):
        return signed_results(operation.results, operation.blob_refs)


class GeoJSONUploadTicketSerializer(ResponseSerializer):
    upload_id = serializers.CharField()
    upload_url = serializers.URLField()


class RasterUploadTicketSerializer(ResponseSerializer):
    raster_id = serializers.CharField()
    upload_url = serializers.URLField()


class DownloadSerializer(ResponseSerializer):
    download_url = serializers.URLField()
    expiration = serializers.IntegerField()


class UserInfoSerializer(ResponseSerializer):
    # Renders a user; the organization (the API key's) comes in the context.

    user_id = serializers.CharField(source="pk")
    username = serializers.CharField()
    organization_id = serializers.CharField()
    organization_name = serializers.CharField()

    def compute_organization_id(self, user):
        return self.context["organization"].pk

    def compute_organization_name(self, user) -> str:
        return self.context["organization"].name


class RasterSerializer(ResponseSerializer):
    # Renders an `Image` (and its `RasterDetails`).

    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    status = serializers.ChoiceField(["processing", "ready", "failed"])
    error = serializers.CharField(allow_null=True)
    folder_id = serializers.CharField(source="project_id")
    captured_at = IsoDateTimeField(allow_null=True)
    identity_key = serializers.CharField(allow_null=True)
    user_tag = serializers.CharField(allow_null=True)
    cloud_coverage = serializers.IntegerField(allow_null=True)
    multispectral = serializers.BooleanField()
    type = serializers.CharField()
    width = serializers.IntegerField(allow_null=True)
    height = serializers.IntegerField(allow_null=True)
    bands_count = serializers.IntegerField(allow_null=True, source="band_count")
    multispectral_band_specification = serializers.JSONField()
    tms_url = serializers.CharField(allow_null=True)
    tiles_min_zoom = serializers.IntegerField(allow_null=True)
    tiles_max_zoom = serializers.IntegerField(allow_null=True)
    footprint = serializers.JSONField(allow_null=True)

    def compute_status(self, image: Image) -> str:
        return raster_status(image)

    def compute_error(self, image: Image) -> str | None:
        return image.error or None

    def compute_identity_key(self, image: Image) -> str | None:
        return details_of(image).identity_key or None

    def compute_user_tag(self, image: Image) -> str | None:
        return details_of(image).user_tag or None

    def compute_cloud_coverage(self, image: Image) -> int | None:
        return details_of(image).cloud_coverage

    def compute_multispectral(self, image: Image) -> bool:
        return details_of(image).multispectral

    def compute_type(self, image: Image) -> str:
        return "raster"

    def compute_multispectral_band_specification(self, image: Image) -> dict:
        return band_specification(image)

    def compute_tms_url(self, image: Image) -> str | None:
        return raster_tms_url(image)

    def compute_tiles_min_zoom(self, image: Image) -> int | None:
        return raster_zooms(image)[0]

    def compute_tiles_max_zoom(self, image: Image) -> int | None:
        return raster_zooms(image)[1]

    def compute_footprint(self, image: Image) -> dict | None:
        return raster_footprint(image)


class ClassSerializer(ResponseSerializer):
    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    color = serializers.CharField()


class PublicDetectorSerializer(ResponseSerializer):
    # Renders a `Detector`: no tags or sharing outside the organization here.

    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    is_runnable = serializers.BooleanField()
    is_shared = serializers.BooleanField()
    user_tag = serializers.CharField(allow_null=True)
    type = serializers.CharField()
    kind = serializers.CharField(help_text="`single` (one image) or `change` (two dates compared).")
    folder_id = serializers.CharField(allow_null=True, source="project_id")
    classes = ClassSerializer(many=True)
    configuration = ConfigurationSerializer()

    def compute_is_runnable(self, detector: Detector) -> bool:
        return is_runnable(detector)

    def compute_is_shared(self, detector: Detector) -> bool:
        return False

    def compute_user_tag(self, detector: Detector) -> None:
        return None

    def compute_type(self, detector: Detector) -> str:
        return "custom"

    def compute_classes(self, detector: Detector):
        return detector_classes(detector)

    def compute_configuration(self, detector: Detector) -> dict:
        return detector.configuration()


class VectorLayerSerializer(ResponseSerializer):
    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    color = serializers.CharField()
    count = serializers.IntegerField()
    raster_id = serializers.CharField(source="image_id")
    detector_id = serializers.CharField(allow_null=True)
    created_at = IsoDateTimeField()

    def compute_detector_id(self, layer: VectorLayer):
        return layer.detection_run.detector_id if layer.detection_run_id else None


class MarkerSerializer(ResponseSerializer):
    id = serializers.CharField(source="pk")
    raster_id = serializers.CharField(source="image_id")
    detector_id = serializers.CharField(allow_null=True)
    marker = serializers.JSONField()
    text = serializers.CharField(allow_blank=True)
    created_at = IsoDateTimeField()

    def compute_marker(self, marker: Marker) -> dict:
        return {"type": "Point", "coordinates": [marker.point.x, marker.point.y]}


class FolderSerializer(ResponseSerializer):
    id = serializers.CharField(source="pk")
    name = serializers.CharField()
    created_at = IsoDateTimeField()


def _page(item: type[serializers.Serializer], name: str) -> type[serializers.Serializer]:
    """A page of a list: render `{"count", "page_size", "next", "previous", "results": [rows]}`."""
    return type(
        name,
        (ResponseSerializer,),
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
