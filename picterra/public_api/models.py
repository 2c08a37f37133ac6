"""What the public API needs on top of the platform's models: operations, vector layers, markers.

Operations do not run anything themselves: each one points at the row that does the work (an image being
ingested, a training or detection run) and reads its state, so it ends when that row ends (the sweeper
guarantees that). Synchronous operations (annotation imports, downloads) are stored finished.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.gis.db import models

from detectors.models import DetectionRun, Detector, DetectorClass, TrainingRun
from imagery.models import Image
from picterra.organizations.models import Organization, OrganizationScopedQuerySet


class Operation(models.Model):
    class Kind(models.TextChoices):
        UPLOAD_RASTER = "upload_raster"
        TRAINING = "training"
        DETECTION = "detector"
        ANNOTATIONS = "annotations_upload"
        DETECTION_AREAS = "detection_areas_upload"
        VECTOR_LAYER_UPLOAD = "vector_layer_upload"
        VECTOR_LAYER_DOWNLOAD = "vector_layer_download"
        DATASET_RECOMMENDATION = "dataset_recommendation"

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCESS = "success"
        FAILED = "failed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    # The row doing the work, for asynchronous operations (SET_NULL: a deleted target fails the operation).
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    training_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    detection_run = models.ForeignKey(DetectionRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Stored once the operation has ended. Results are plain data: a string in them is never taken for a blob,
    # whoever chose it (class names end up there). The blobs the server wrote are listed apart, in blob_refs,
    # as [{"path": ["by_class", 0, "result", "url"], "key": "<blob key>"}], and signed at those places on read.
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    results = models.JSONField(null=True, blank=True)
    blob_refs = models.JSONField(default=list, blank=True)
    errors = models.JSONField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    organization_lookup = "organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]


class RasterDetails(models.Model):
    """Public API fields of a raster that the platform itself does not use."""

    image = models.OneToOneField(Image, primary_key=True, on_delete=models.CASCADE, related_name="public_details")
    identity_key = models.CharField(max_length=200, blank=True, default="")
    user_tag = models.CharField(max_length=200, blank=True, default="")
    cloud_coverage = models.PositiveSmallIntegerField(null=True, blank=True)
    multispectral = models.BooleanField(default=True)


class RasterDetectionArea(models.Model):
    """Where detections run on a raster, whatever the detector (copied to the detector's areas on run)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="public_detection_areas")
    geometry = models.PolygonField(srid=4326)
    created_at = models.DateTimeField(auto_now_add=True)

    organization_lookup = "image__project__organization"
    objects = OrganizationScopedQuerySet.as_manager()


class VectorLayer(models.Model):
    """Polygons on a raster: the objects of one class found by a detection run, or an uploaded GeoJSON."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="vector_layers")
    name = models.CharField(max_length=200)
    color = models.CharField(max_length=7, default="#0000FF")
    detection_run = models.ForeignKey(DetectionRun, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    detector_class = models.ForeignKey(DetectorClass, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    blob_key = models.CharField(max_length=500, blank=True, default="", help_text="Uploaded layers: the file.")
    count = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    organization_lookup = "image__project__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["detection_run", "detector_class", "image"], name="one_layer_per_run_class_image"
            )
        ]

    # Blob store folder whose entries are named by a layer id (``imagery.purge``, ``blob_orphans``).
    blob_namespaces = ("public-api/vector-layers/",)

    def blob_prefixes(self) -> list[str]:
        """The uploaded file (``<id>.geojson``) and the downloads written for it (``<id>/…``)."""
        return [f"public-api/vector-layers/{self.pk}"]


class Marker(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="markers")
    detector = models.ForeignKey(Detector, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    point = models.PointField(srid=4326)
    text = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    organization_lookup = "image__project__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]


class TemporaryFile(models.Model):
    """Something the public API hands out for a while only: an upload ticket or a written download.

    Each has an expiry; `picterra.public_api.cleanup.expire_public_api_temporaries` (called by the sweeper)
    deletes what expired: the blob, and for a raster upload never committed, the waiting raster too.
    """

    class Kind(models.TextChoices):
        GEOJSON_UPLOAD = "geojson_upload"  # a GeoJSON file PUT to `key`, read by the next commit
        RASTER_UPLOAD = "raster_upload"  # a raster waiting for its bytes (`image`); dropped when committed
        DOWNLOAD = "download"  # a file written for one download operation (`operation`)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=500, blank=True, default="")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    operation = models.ForeignKey(Operation, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)

    organization_lookup = "organization"
    objects = OrganizationScopedQuerySet.as_manager()
