"""Images: an uploaded raster, its Cloud-Optimized GeoTIFF in the blob store and its metadata."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.contrib.gis.db import models

from imagery.storage import image_prefix
from picterra.organizations.models import OrganizationScopedQuerySet, Project


class Image(models.Model):
    class Status(models.TextChoices):
        UPLOADING = "uploading", "Waiting for upload"
        UPLOADED = "uploaded", "Uploaded, waiting for processing"
        INGESTING = "ingesting", "Processing"
        READY = "ready", "Ready"
        FAILED = "failed", "Failed"

    TERMINAL_STATUSES = (Status.READY, Status.FAILED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="images")
    name = models.CharField(max_length=300)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.UPLOADING, db_index=True)
    error = models.TextField(blank=True, default="", help_text="Why processing failed, in plain words.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    captured_at = models.DateTimeField(null=True, blank=True)

    # Ingest attempts started (a worker killed by the file counts): bounded by settings.INGEST_MAX_ATTEMPTS.
    ingest_attempts = models.PositiveSmallIntegerField(default=0)
    # Blob store keys: the file as uploaded, and the Cloud-Optimized GeoTIFF every read goes to.
    original_key = models.CharField(max_length=500, blank=True, default="")
    original_filename = models.CharField(max_length=300, blank=True, default="")
    file_size = models.BigIntegerField(null=True, blank=True)
    cog_key = models.CharField(max_length=500, blank=True, default="")
    # Changes whenever a new COG is written, so tile URLs that embed it can be cached forever.
    cog_version = models.CharField(max_length=32, blank=True, default="")

    # Raster metadata, filled in by ingest.
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    band_count = models.PositiveSmallIntegerField(null=True, blank=True)
    dtype = models.CharField(max_length=16, blank=True, default="")
    crs = models.TextField(blank=True, default="", help_text="CRS of the pixels, as EPSG code or WKT.")
    gsd = models.FloatField(null=True, blank=True, help_text="Ground sample distance in metres per pixel.")
    bounds = models.JSONField(null=True, blank=True, help_text="[minx, miny, maxx, maxy] in the image CRS.")
    footprint = models.PolygonField(srid=4326, null=True, blank=True, spatial_index=True)
    nodata = models.FloatField(null=True, blank=True)
    is_georeferenced = models.BooleanField(default=True)
    # How the image is shown and fed to models: 1-based band indexes for R,G,B and per-band [min, max]
    # that map to 0..255 (from percentiles of the data at ingest, editable by the user).
    display_bands = models.JSONField(default=list, blank=True)
    rescale = models.JSONField(default=list, blank=True)

    organization_lookup = "project__organization"
    objects = OrganizationScopedQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @property
    def pixel_transform(self):
        """Pixel (col, row) -> image CRS, from the stored bounds and size (north-up COGs)."""
        from affine import Affine

        minx, miny, maxx, maxy = self.bounds
        return Affine(
            (maxx - minx) / self.width, 0.0, minx, 0.0, -(maxy - miny) / self.height, maxy
        )

    @property
    def organization_id(self):
        return self.project.organization_id

    # The blob store folders whose entries are named by an image id (``imagery.purge``, ``blob_orphans``).
    blob_namespaces = ("images/",)

    def blob_prefixes(self) -> list[str]:
        """Everything this image owns in the blob store: the original and every COG."""
        return [image_prefix(self.pk)]


class BlobPurge(models.Model):
    """A blob store prefix to delete because the rows that owned it were deleted (an outbox row).

    Written in the same transaction as the delete, so a crash, a broker outage or a failing store can
    never forget it: ``imagery.purge.purge_pending_blobs`` deletes the prefix and then the row, and keeps
    the row (``attempts``, ``last_error``) when the store fails, for the next run to try again.
    """

    id = models.BigAutoField(primary_key=True)
    prefix = models.CharField(max_length=500)
    created_at = models.DateTimeField(auto_now_add=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["attempts", "created_at"]

    def __str__(self) -> str:
        return self.prefix
