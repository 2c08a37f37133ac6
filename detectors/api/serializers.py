from __future__ import annotations

import re

from django.db import transaction
from django.db.models import JSONField, OuterRef, QuerySet, Subquery
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from detectors.models import (
    Annotation,
    Area,
    DetectionRun,
    Detector,
    DetectorClass,
    DetectorImage,
    RunStatus,
    TrainingRun,
)
from detectors.pairs import check_image_pair
from imagery.models import Image
from picterra.api.fields import GeoJSONPolygonField
from picterra.api.viewsets import ScopedPrimaryKeyRelatedField
from picterra.organizations.models import Organization, Project

HEX_COLOR = re.compile(r"^#[0-9A-Fa-f]{6}$")
DEFAULT_CLASS_NAME = "object"


class HexColorField(serializers.CharField):
    """A #RRGGBB colour, stored upper-case so equal colours compare equal."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=7, **kwargs)

    def to_internal_value(self, data) -> str:
        value = super().to_internal_value(data)
        if not HEX_COLOR.match(value):
            raise serializers.ValidationError("Colour must look like #RRGGBB, e.g. #FF8800.")
        return value.upper()


class NewClassSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    color = HexColorField(default="#0000FF")


class DetectorClassSerializer(serializers.ModelSerializer):
    detector = ScopedPrimaryKeyRelatedField(queryset=Detector.objects.all())
    color = HexColorField(required=False)

    class Meta:
        model = DetectorClass
        fields = ["id", "detector", "name", "color", "position"]
        read_only_fields = ["id"]

    def validate_detector(self, detector):
        if self.instance is not None and detector != self.instance.detector:
            raise serializers.ValidationError("A class cannot move to another detector.")
        return detector


def with_training_summary(detectors: QuerySet[Detector]) -> QuerySet[Detector]:
    """Annotate what a detector card shows (its latest training's status and version, the score of the version
    Detect uses) in the list's own query: no query per detector."""
    runs = TrainingRun.objects.filter(detector=OuterRef("pk"))
    latest = runs.order_by("-version")
    succeeded = runs.filter(status=RunStatus.SUCCEEDED).order_by("-version")
    return detectors.select_related("active_training_run").annotate(
        latest_training_status=Subquery(latest.values("status")[:1]),
        latest_training_version=Subquery(latest.values("version")[:1]),
        succeeded_version=Subquery(succeeded.values("version")[:1]),
        succeeded_score=Subquery(succeeded.values("metrics__score")[:1], output_field=JSONField()),
    )


class TrainingSummarySerializer(serializers.Serializer):
    status = serializers.CharField(help_text="The latest training's status, or `untrained` when there is none.")
    latest_version = serializers.IntegerField(allow_null=True, help_text="The latest training's version.")
    version = serializers.IntegerField(
        allow_null=True, help_text="The trained version Detect uses (the chosen one, else the latest that succeeded)."
    )
    score = serializers.FloatField(
        allow_null=True,
        help_text="That version's score (its F-score on the accuracy areas, 0 to 100), when it has one.",
    )


def training_summary(detector: Detector) -> dict:
    """The card's facts, from `with_training_summary`'s annotations (or a few queries for a detector without)."""
    if not hasattr(detector, "latest_training_status"):
        detector = with_training_summary(Detector.objects.filter(pk=detector.pk)).get()
    active = detector.active_training_run
    if active is not None and active.status == RunStatus.SUCCEEDED:
        version, score = active.version, (active.metrics or {}).get("score")
    else:
        version, score = detector.succeeded_version, detector.succeeded_score
    return {
        "status": detector.latest_training_status or "untrained",
        "latest_version": detector.latest_training_version,
        "version": version,
        "score": float(score) if isinstance(score, int | float) and not isinstance(score, bool) else None,
    }


class DetectorSerializer(serializers.ModelSerializer):
    organization = ScopedPrimaryKeyRelatedField(queryset=Organization.objects.all())
    project = ScopedPrimaryKeyRelatedField(queryset=Project.objects.all(), required=False, allow_null=True)
    active_training_run = ScopedPrimaryKeyRelatedField(
        queryset=TrainingRun.objects.all(), required=False, allow_null=True
    )
    classes = serializers.SerializerMethodField()
    training = serializers.SerializerMethodField(help_text="Where training stands: for the detector's card.")
    initial_classes = NewClassSerializer(
        many=True, write_only=True, required=False, help_text="Classes to create with the detector."
    )

    class Meta:
        model = Detector
        fields = [
            "id",
            "organization",
            "project",
            "name",
            "kind",
            *Detector.CONFIGURATION_FIELDS,
            "classes",
            "initial_classes",
            "active_training_run",
            "training",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    @extend_schema_field(TrainingSummarySerializer)
    def get_training(self, detector: Detector) -> dict:
        return training_summary(detector)

    def get_classes(self, detector: Detector) -> list[dict]:
        return [
            {"id": str(c.id), "name": c.name, "color": c.color, "position": c.position} for c in detector.classes.all()
        ]

    def validate(self, attrs):
        organization = attrs.get("organization") or (self.instance and self.instance.organization)
        if self.instance is not None and organization != self.instance.organization:
            raise serializers.ValidationError({"organization": "A detector cannot move to another organization."})
        if self.instance is not None and attrs.get("kind", self.instance.kind) != self.instance.kind:
            raise serializers.ValidationError(
                {"kind": "A detector's kind is chosen when it is created: create a new detector of the other kind."}
            )
        project = attrs.get("project")
        if project is not None and project.organization_id != organization.pk:
            raise serializers.ValidationError({"project": "The project belongs to another organization."})
        run = attrs.get("active_training_run")
        if run is not None:
            if self.instance is None or run.detector_id != self.instance.pk:
                raise serializers.ValidationError({"active_training_run": "This training run is of another detector."})
            if run.status != RunStatus.SUCCEEDED:
                raise serializers.ValidationError(
                    {"active_training_run": "Only a successful training run can be used."}
                )
        names = [c["name"] for c in attrs.get("initial_classes", [])]
        if len(names) != len(set(names)):
            raise serializers.ValidationError({"initial_classes": "Class names must be different."})
        return attrs

    @transaction.atomic
    def create(self, validated_data):
        classes = validated_data.pop("initial_classes", None) or [{"name": DEFAULT_CLASS_NAME, "color": "#0000FF"}]
        detector = super().create(validated_data)
        DetectorClass.objects.bulk_create(
            DetectorClass(detector=detector, name=c["name"], color=c["color"], position=i)
            for i, c in enumerate(classes)
        )
        return detector

    def update(self, instance, validated_data):
        validated_data.pop("initial_classes", None)
        return super().update(instance, validated_data)


class DetectorImageSerializer(serializers.ModelSerializer):
    detector = ScopedPrimaryKeyRelatedField(queryset=Detector.objects.all())
    image = ScopedPrimaryKeyRelatedField(queryset=Image.objects.all())
    second_image = ScopedPrimaryKeyRelatedField(
        queryset=Image.objects.all(),
        required=False,
        allow_null=True,
        help_text="Change detectors: the same place at another date, compared with `image` (whose grid is read).",
    )

    class Meta:
        model = DetectorImage
        fields = ["id", "detector", "image", "second_image", "created_at"]
        read_only_fields = ["id", "created_at"]
        # The unique (detector, image) pair is checked in `validate`, in plain words (DRF's own validator said
        # "The fields detector, image must make a unique set.").
        validators: list = []

    def validate(self, attrs):
        if self.instance is not None:
            # Only the second date changes once attached: another image is another attachment.
            if any(attrs.get(k, getattr(self.instance, k)) != getattr(self.instance, k) for k in ("detector", "image")):
                raise serializers.ValidationError("Attach the other image instead of moving this attachment.")
            attrs = {"detector": self.instance.detector, "image": self.instance.image, **attrs}
        detector, image, second = attrs["detector"], attrs["image"], attrs.get("second_image")
        if image.project.organization_id != detector.organization_id or (
            second is not None and second.project.organization_id != detector.organization_id
        ):
            raise serializers.ValidationError("The image belongs to another organization than the detector.")
        if self.instance is None and DetectorImage.objects.filter(detector=detector, image=image).exists():
            raise serializers.ValidationError("This image is already attached to the detector.")
        if second is not None:
            if detector.kind != Detector.Kind.CHANGE:
                raise serializers.ValidationError(
                    {"second_image": "Only a change detector compares two images: this one looks at one at a time."}
                )
            try:
                check_image_pair(image, second)
            except ValueError as exc:  # ImagePairError: plain words
                raise serializers.ValidationError({"second_image": str(exc)}) from None
        return attrs


class DrawnGeometrySerializer(serializers.ModelSerializer):
    """What areas and outlines share: a polygon drawn on one image of one detector."""

    detector = ScopedPrimaryKeyRelatedField(queryset=Detector.objects.all())
    image = ScopedPrimaryKeyRelatedField(queryset=Image.objects.all())
    geometry = GeoJSONPolygonField()

    def validate(self, attrs):
        detector = attrs.get("detector") or self.instance.detector
        image = attrs.get("image") or self.instance.image
        if self.instance is not None and (detector != self.instance.detector or image != self.instance.image):
            raise serializers.ValidationError(
                "Draw a new shape instead of moving this one to another image or detector."
            )
        if not DetectorImage.objects.filter(detector=detector, image=image).exists():
            raise serializers.ValidationError("Add the image to the detector before drawing on it.")
        geometry = attrs.get("geometry")
        if geometry is not None and image.footprint is not None and not geometry.intersects(image.footprint):
            raise serializers.ValidationError({"geometry": "The shape lies outside the image."})
        return attrs


class AreaSerializer(DrawnGeometrySerializer):
    class Meta:
        model = Area
        fields = ["id", "detector", "image", "kind", "geometry", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]


class AnnotationSerializer(DrawnGeometrySerializer):
    detector_class = ScopedPrimaryKeyRelatedField(
        queryset=DetectorClass.objects.all(), required=False, help_text="Defaults to the detector's first class."
    )

    class Meta:
        model = Annotation
        fields = ["id", "detector", "image", "detector_class", "geometry", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs):
        attrs = super().validate(attrs)
        detector = attrs.get("detector") or self.instance.detector
        detector_class = attrs.get("detector_class")
        if detector_class is None and self.instance is None:
            detector_class = detector.classes.order_by("position").first()
            if detector_class is None:
                raise serializers.ValidationError({"detector_class": "The detector has no class; add one first."})
            attrs["detector_class"] = detector_class
        if detector_class is not None and detector_class.detector_id != detector.pk:
            raise serializers.ValidationError({"detector_class": "This class belongs to another detector."})
        return attrs


class TrainingRunSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = [
            "id",
            "detector",
            "version",
            "status",
            "error",
            "progress",
            "config",
            "metrics",
            "stats",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields


class DetectRequestSerializer(serializers.Serializer):
    """What to detect on. With the detector in the context (``detector``), its images and version must be its own
    organization's: a user of two organizations must not run one's detector on the other's images, which
    would let the first organization's members read what was found in the second's."""

    images = ScopedPrimaryKeyRelatedField(queryset=Image.objects.all(), many=True)
    training_run = ScopedPrimaryKeyRelatedField(
        queryset=TrainingRun.objects.all(), required=False, help_text="Defaults to the detector's chosen version."
    )
    second_image = ScopedPrimaryKeyRelatedField(
        queryset=Image.objects.all(),
        required=False,
        allow_null=True,
        help_text="Change detectors: the image of the other date, compared with the one image in `images`.",
    )

    def validate(self, attrs):
        detector = self.context.get("detector")
        if detector is None:
            return attrs
        chosen = [i.pk for i in attrs["images"]] + ([attrs["second_image"].pk] if attrs.get("second_image") else [])
        foreign = images_of_other_organizations(detector, Image.objects.filter(pk__in=chosen))
        if foreign:
            raise serializers.ValidationError(
                {"images": f"These images belong to another organization than the detector: {', '.join(foreign)}."}
            )
        run = attrs.get("training_run")
        if run is not None and run.detector_id != detector.pk:
            raise serializers.ValidationError({"training_run": "This training run is of another detector."})
        return attrs


def images_of_other_organizations(detector: Detector, images) -> list[str]:
    """Names of the images (a queryset) that are not in the detector's organization, at most five."""
    others = images.exclude(**{f"{Image.organization_lookup}_id": detector.organization_id})
    return list(others.order_by("name").values_list("name", flat=True).distinct()[:5])


class DetectionRunSerializer(serializers.ModelSerializer):
    failed_cells = serializers.SerializerMethodField()

    def get_failed_cells(self, run: DetectionRun) -> list[dict]:
        # Prefetched by the viewset (one query for a whole page of runs); counted first otherwise.
        cells = getattr(run, "failed_cell_rows", None)
        if cells is None:
            cells = run.cells.filter(status="failed").order_by("image_id", "key") if run.cells_failed else []
        return [{"image": str(c.image_id), "cell": c.key, "window": c.window, "error": c.error} for c in cells[:100]]

    class Meta:
        model = DetectionRun
        fields = [
            "id",
            "detector",
            "training_run",
            "images",
            "second_image",
            "status",
            "error",
            "progress",
            "cells_total",
            "cells_done",
            "cells_failed",
            "failed_cells",
            "objects_count",
            "created_at",
            "started_at",
            "finished_at",
            "heartbeat_at",
        ]
        read_only_fields = fields
