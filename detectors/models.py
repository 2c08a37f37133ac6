"""Detectors, what users draw for them, and the runs that train and apply them.

Geometries are stored in EPSG:4326 with a spatial index; pixel work transforms them to the image CRS.
Runs are the truth about jobs: the queue only nudges workers, the row holds status, progress and errors.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.gis.db import models
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db.models import Q
from django.utils import timezone

from imagery.models import Image
from picterra.organizations.models import Organization, OrganizationScopedQuerySet, Project

# Defaults and ranges of the public API (spec section 7).
TRAINING_STEPS_RANGE = (500, 40_000)
TILE_SIZE_RANGE = (128, 1024)


def validate_tile_size(value: int) -> None:
    from django.core.exceptions import ValidationError

    low, high = TILE_SIZE_RANGE
    if value % 32 or not low <= value <= high:
        raise ValidationError(f"Tile size must be a multiple of 32 between {low} and {high}.")


class Detector(models.Model):
    class Kind(models.TextChoices):
        SINGLE = "single", "One image"
        CHANGE = "change", "Change between two dates"

    class DetectionType(models.TextChoices):
        COUNT = "count", "Count objects"
        SEGMENTATION = "segmentation", "Segment areas"

    class OutputType(models.TextChoices):
        POLYGON = "polygon", "Polygons"
        BBOX = "bbox", "Bounding boxes"

    class Backbone(models.TextChoices):
        RESNET18 = "resnet18", "ResNet-18"
        RESNET34 = "resnet34", "ResNet-34"
        RESNET50 = "resnet50", "ResNet-50"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="detectors")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="detectors")
    name = models.CharField(max_length=200)
    # What one prediction reads: one image, or (change) a pair of images of the same place at two dates, each
    # training image with its second date (DetectorImage.second_image), each detection with its second image.
    # Chosen at creation; what the pipeline reads to open pairs (the ML core's Recipe.dates follows from them).
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.SINGLE)
    detection_type = models.CharField(max_length=16, choices=DetectionType.choices, default=DetectionType.COUNT)
    output_type = models.CharField(max_length=16, choices=OutputType.choices, default=OutputType.POLYGON)
    training_steps = models.PositiveIntegerField(
        default=500, validators=[MinValueValidator(TRAINING_STEPS_RANGE[0]), MaxValueValidator(TRAINING_STEPS_RANGE[1])]
    )
    backbone = models.CharField(max_length=16, choices=Backbone.choices, default=Backbone.RESNET34)
    tile_size = models.PositiveIntegerField(default=256, validators=[validate_tile_size])
    background_sample_ratio = models.FloatField(
        default=0.25, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    images = models.ManyToManyField(
        Image, through="DetectorImage", through_fields=("detector", "image"), related_name="detectors", blank=True
    )
    # The trained version that Detect uses; None means the latest successful one.
    active_training_run = models.ForeignKey(
        "TrainingRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    organization_lookup = "organization"
    objects = OrganizationScopedQuerySet.as_manager()

    #: The settings a user picks, as the ML core takes them (workers.ml.config.DetectorConfig, with the
    #: classes) and as Picterra's API names them (``configuration``). A training run keeps a snapshot.
    CONFIGURATION_FIELDS = (
        "detection_type",
        "output_type",
        "training_steps",
        "backbone",
        "tile_size",
        "background_sample_ratio",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    def configuration(self) -> dict:
        return {key: getattr(self, key) for key in self.CONFIGURATION_FIELDS}


class DetectorClass(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="classes")
    name = models.CharField(max_length=100)
    color = models.CharField(max_length=7, default="#0000FF", help_text="Hex colour, e.g. #FF8800.")
    position = models.PositiveSmallIntegerField(default=0, help_text="Order of the class in the model's output.")

    organization_lookup = "detector__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["detector", "position", "name"]
        constraints = [models.UniqueConstraint(fields=["detector", "name"], name="unique_class_name_per_detector")]

    def __str__(self) -> str:
        return self.name


class DetectorImage(models.Model):
    """An image a detector is trained on (a "training raster" in the public API)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="detector_images")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="detector_images")
    # A change detector's pair: ``image`` is the first date (its grid is read, shapes are drawn on it) and this
    # the second; None for single-image detectors, and until the user chooses it (training then asks for it).
    second_image = models.ForeignKey(
        Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="second_date_of"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    organization_lookup = "detector__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        constraints = [models.UniqueConstraint(fields=["detector", "image"], name="unique_detector_image")]


class Area(models.Model):
    class Kind(models.TextChoices):
        TRAINING = "training", "Training area"
        TESTING = "testing", "Testing area"
        ACCURACY = "accuracy", "Accuracy area"
        DETECTION = "detection", "Detection area"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="areas")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="areas")
    kind = models.CharField(max_length=16, choices=Kind.choices, db_index=True)
    geometry = models.PolygonField(srid=4326, spatial_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    organization_lookup = "detector__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["detector", "image", "kind"])]


class Annotation(models.Model):
    """An object outline drawn by the user, with its class."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="annotations")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="annotations")
    detector_class = models.ForeignKey(DetectorClass, on_delete=models.CASCADE, related_name="annotations")
    geometry = models.PolygonField(srid=4326, spatial_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    organization_lookup = "detector__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["created_at"]
        indexes = [models.Index(fields=["detector", "image"])]


class RunStatus(models.TextChoices):
    PENDING = "pending", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    PARTIAL = "partial", "Partly succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


TERMINAL_RUN_STATUSES = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED, RunStatus.CANCELLED)


# Where runs keep their files in the blob store. The names live here, beside the rows that own the files, so
# that deleting a run (imagery.purge) and writing its files (workers.pipelines) agree on them.
def training_run_prefix(run_id) -> str:
    """Weights and model card of a training run, one ``<attempt>/`` folder per attempt below it."""
    return f"training-runs/{run_id}/"


def detection_run_prefix(run_id) -> str:
    """Exports of a detection run (GeoJSON, GeoPackage, counts CSV)."""
    return f"detection-runs/{run_id}/"


def public_api_detection_run_prefix(run_id) -> str:
    """The public API's per-class result files of a detection run (``picterra.public_api.translate``)."""
    return f"public-api/detection-runs/{run_id}/"


class Run(models.Model):
    """What training and detection runs share: a status with explicit terminal states, and timing."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    detector = models.ForeignKey(Detector, on_delete=models.CASCADE)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.PENDING, db_index=True)
    error = models.TextField(blank=True, default="", help_text="Why the run failed, in plain words.")
    progress = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Moved by the worker while it makes progress; the sweeper re-queues (or, attempts spent, fails) rows
    # whose heartbeat went stale.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # When its message was last sent: the sweeper sends it again once this and the heartbeat are stale.
    queued_at = models.DateTimeField(default=timezone.now)

    organization_lookup = "detector__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_RUN_STATUSES


class TrainingRun(Run):
    """One training of a detector: a version of it, with its weights and score."""

    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="training_runs")
    version = models.PositiveIntegerField()
    # The detector's configuration and classes as they were when the run was queued.
    config = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    # Inside the accuracy areas: matches, false detections and misses (a lon/lat GeoJSON FeatureCollection),
    # so the user sees where to add training areas.
    review = models.JSONField(default=dict, blank=True)
    # Where to label next: squares outside the drawn areas where this version is least sure, ranked (a lon/lat
    # GeoJSON FeatureCollection, properties rank, reason, score, image; workers.ml.recommend). Empty when
    # they could not be computed: that never fails the training.
    suggestions = models.JSONField(default=dict, blank=True)
    stats = models.JSONField(default=dict, blank=True)
    weights_key = models.CharField(max_length=500, blank=True, default="")
    model_card_key = models.CharField(max_length=500, blank=True, default="")
    # Claims of the run by a worker (a killed worker counts): bounded by settings.TRAINING_MAX_ATTEMPTS.
    attempts = models.PositiveSmallIntegerField(default=0)

    class Meta(Run.Meta):
        constraints = [
            models.UniqueConstraint(fields=["detector", "version"], name="unique_training_version"),
            models.CheckConstraint(condition=~Q(status="partial"), name="training_run_never_partial"),
        ]

    def __str__(self) -> str:
        return f"{self.detector} v{self.version} ({self.status})"

    # Blob store folders whose entries are named by a training run id (``imagery.purge``, ``blob_orphans``).
    blob_namespaces = ("training-runs/",)

    def blob_prefixes(self) -> list[str]:
        return [training_run_prefix(self.pk)]


class DetectionRun(Run):
    """Applying a trained detector version to whole images, cell by cell."""

    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="detection_runs")
    training_run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="detection_runs")
    images = models.ManyToManyField(Image, related_name="detection_runs")
    # A change detector's run: the second date compared with its (single) image, read on that image's grid.
    second_image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    cells_total = models.PositiveIntegerField(default=0)
    cells_done = models.PositiveIntegerField(default=0)
    cells_failed = models.PositiveIntegerField(default=0)
    objects_count = models.PositiveIntegerField(default=0)
    result_keys = models.JSONField(default=dict, blank=True, help_text="Export format → blob store key.")
    # Starts of the final step (merge, exports) since a cell last ran: bounded by DETECTION_FINISH_ATTEMPTS.
    finish_attempts = models.PositiveSmallIntegerField(default=0)

    class Meta(Run.Meta):
        pass

    def __str__(self) -> str:
        return f"Detection {self.id} of {self.detector} ({self.status})"

    blob_namespaces = ("detection-runs/", "public-api/detection-runs/")

    def blob_prefixes(self) -> list[str]:
        return [detection_run_prefix(self.pk), public_api_detection_run_prefix(self.pk)]


class DetectionCell(models.Model):
    """One grid cell of a detection run: an independent, retryable unit of work."""

    class Status(models.TextChoices):
        PENDING = "pending", "Queued"
        RUNNING = "running", "Running"
        DONE = "done", "Done"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(DetectionRun, on_delete=models.CASCADE, related_name="cells")
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=64, help_text="Position in the image's grid, e.g. r3c7.")
    window = models.JSONField(help_text="[col_off, row_off, width, height] in pixels.")
    # width x height, stored so progress is one SUM in the database, not a walk over every cell.
    pixels = models.PositiveBigIntegerField(default=0)
    margin = models.PositiveIntegerField(help_text="Pixels read around the cell so border objects are seen whole.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    objects_count = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(null=True, blank=True)
    # The blob holding this cell's objects away from cell borders as the exports write them (``exports.
    # write_cell_part``): written once the cell is done, cleared whenever its objects are replaced; empty, the
    # exports read those objects from the database instead.
    export_part = models.CharField(max_length=200, blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["run", "image", "key"]
        constraints = [models.UniqueConstraint(fields=["run", "image", "key"], name="unique_cell_per_run_image")]
        # "Is any cell of this run left?" after every cell: an index lookup, even with 100,000s of cells.
        indexes = [models.Index(fields=["run", "status"], name="cell_run_status")]


class DetectedObject(models.Model):
    """One object found by a run: predictions in testing areas (training run) or results (detection run).

    Detection results are keyed by the grid cell that produced them, so a retried cell replaces its own
    objects and never duplicates them.
    """

    id = models.BigAutoField(primary_key=True)
    # Keys without database constraints: PostgreSQL checks a foreign key row by row, and the four checks were
    # half of its CPU for each of the millions of rows a large detection inserts (docs/experiments.md). The same
    # guarantee in two places instead: ``detectors.results.insert_objects`` (the one writer) locks the rows'
    # runs, images and classes once per insert and refuses rows whose parent is gone, and on PostgreSQL a
    # trigger on each parent table deletes the objects of a deleted parent, those committed while its deletion
    # waited included (migration 0013). Django's own cascade still deletes them first.
    # The runs' keys have no index of their own: the composite indexes below lead with them and serve the same
    # lookups and cascades, and every index is paid on each insert (two fewer: inserts ~20 % faster).
    training_run = models.ForeignKey(
        TrainingRun, null=True, blank=True, on_delete=models.CASCADE, related_name="predicted_objects",
        db_index=False, db_constraint=False,
    )
    detection_run = models.ForeignKey(
        DetectionRun, null=True, blank=True, on_delete=models.CASCADE, related_name="detected_objects",
        db_index=False, db_constraint=False,
    )
    image = models.ForeignKey(Image, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    detector_class = models.ForeignKey(DetectorClass, on_delete=models.CASCADE, related_name="+", db_constraint=False)
    cell = models.CharField(max_length=64, blank=True, default="", help_text="Grid cell that produced it.")
    geometry = models.PolygonField(srid=4326, spatial_index=True)
    score = models.FloatField()
    area_m2 = models.FloatField()
    # Set by the cell that found it: the object lies in a strip along a border with a neighbouring cell
    # (``workers.ml.grid.cell_border_strips``), so the run's final step may merge it with that cell's part of
    # the same object. Every other object is final once its cell is done, and goes into the cell's export part.
    near_border = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(fields=["detection_run", "cell"]),
            models.Index(fields=["training_run", "image"]),
            # only the few objects along cell borders: what the merge and the exports' last part read
            models.Index(fields=["detection_run", "image"], condition=Q(near_border=True), name="object_near_border"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(training_run__isnull=False) | Q(detection_run__isnull=False), name="object_has_a_run"
            )
        ]
