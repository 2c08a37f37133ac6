"""Turn an uploaded file into a ready image: validate, convert to COG, store, record metadata.

Idempotent and safe to retry (``picterra.jobs.run_row_job`` with ``IngestState``): the row is claimed with a
conditional UPDATE that counts the attempt, each attempt writes its own COG (``images/<id>/cog-<version>.tif``;
a late duplicate never removes the one in use, and the winner removes the others), and nothing is marked ready
until the COG is in place.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import rasterio
from django.conf import settings
from django.contrib.gis.geos import GEOSGeometry
from django.db.models import F
from django.utils.timezone import now

from imagery.cog import SNIFF_BYTES, RasterInfo, RasterRejected, convert_to_cog, display_rescale, inspect_raster
from imagery.models import Image
from imagery.storage import get_blob_store, image_cog_key, image_cog_prefix
from picterra.jobs import RUNNING, Job, JobFailed, RowState, enqueue, run_row_job

logger = logging.getLogger(__name__)

CLAIMABLE = (Image.Status.UPLOADED, Image.Status.INGESTING)


def enqueue_ingest(image: Image) -> None:
    """Queue ingest once the surrounding transaction has committed, so the worker finds the row."""
    enqueue(Job.INGEST_IMAGE, image.pk)


def worker_stopped_message(times: int) -> str:
    return f"Processing this file stopped the worker {times} times; it may be too large or damaged."


class IngestState(RowState):
    """An image's ingest, on its row: ``updated_at`` is the heartbeat the sweeper reads."""

    def claim(self, image_id: str) -> str:
        """Count the attempt before any work (a worker killed by the file, e.g. out of memory, has counted
        it); past INGEST_MAX_ATTEMPTS the image is failed instead of being opened again."""
        claimed = Image.objects.filter(
            pk=image_id, status__in=CLAIMABLE, ingest_attempts__lt=settings.INGEST_MAX_ATTEMPTS
        ).update(status=Image.Status.INGESTING, error="", ingest_attempts=F("ingest_attempts") + 1, updated_at=now())
        if claimed:
            return RUNNING
        image = Image.objects.filter(pk=image_id).only("status").first()
        if image is not None and image.status in CLAIMABLE:
            # Every attempt so far ended with the worker gone: do not give the file another one.
            Image.objects.filter(pk=image_id, status__in=CLAIMABLE).update(
                status=Image.Status.FAILED, error=worker_stopped_message(settings.INGEST_MAX_ATTEMPTS), updated_at=now()
            )
            get_blob_store().delete_prefix(image_cog_prefix(image_id))
            return Image.Status.FAILED
        logger.info("ingest of %s skipped: status is %s", image_id, image.status if image else "deleted")
        return image.status if image else "deleted"

    def beat(self, image_id: str) -> None:
        Image.objects.filter(pk=image_id, status=Image.Status.INGESTING).update(updated_at=now())

    def succeed(self, image_id: str, result: IngestedCog) -> str:
        """Ready with the COG and its metadata, unless the row moved meanwhile (then the COG is removed)."""
        info, store = result.info, get_blob_store()
        updated = Image.objects.filter(pk=image_id, status=Image.Status.INGESTING).update(
            status=Image.Status.READY,
            cog_key=result.cog_key,
            cog_version=result.version,
            width=info.width,
            height=info.height,
            band_count=info.band_count,
            dtype=info.dtype,
            crs=info.crs.to_string(),
            gsd=info.gsd,
            bounds=list(info.bounds),
            footprint=GEOSGeometry(info.footprint_lonlat().wkt, srid=4326),
            nodata=info.nodata,
            is_georeferenced=info.is_georeferenced,
            display_bands=info.display_bands,
            rescale=result.rescale,
        )
        if not updated:
            # Deleted, failed by the sweeper, or finished by a duplicate attempt while we worked: keep the
            # row as it is and leave no orphaned COG of ours behind.
            store.delete(result.cog_key)
            image = Image.objects.filter(pk=image_id).only("status").first()
            return image.status if image else "deleted"
        # COGs of attempts that crashed before finishing.
        for key in store.list(image_cog_prefix(image_id)):
            if key != result.cog_key:
                store.delete(key)
        return Image.Status.READY

    def fail(self, image_id: str, message: str) -> None:
        Image.objects.filter(pk=image_id).update(status=Image.Status.FAILED, error=message)

    def unexpected_failure(self, error: Exception) -> str:
        # The error's type and text (library names, server paths) go to the log only.
        return "Processing this file failed unexpectedly. Try uploading it again."


INGEST = IngestState()


@dataclass(frozen=True)
class IngestedCog:
    """What a conversion produced: the COG's key and version in the store, its metadata and display range."""

    cog_key: str
    version: str
    info: RasterInfo
    rescale: list


def convert_upload(image_id: str) -> IngestedCog:
    """Check the upload is an image we accept, convert it to a COG and put it in the store.

    Each attempt writes its own COG key, removed again if the attempt fails, so a late duplicate never
    touches the COG in use.
    """
    image = Image.objects.get(pk=image_id)
    store = get_blob_store()
    version = uuid.uuid4().hex[:16]
    cog_key = image_cog_key(image.pk, version)
    try:
        with tempfile.TemporaryDirectory(prefix="ingest-") as tmp, rasterio.Env(**store.gdal_env()):
            workdir = Path(tmp)
            source = store.gdal_path(image.original_key)
            # The format is recognised from the first bytes, through the store, before GDAL sees the file.
            head = store.read_range(image.original_key, 0, SNIFF_BYTES - 1)
            info = inspect_raster(source, head=head, size=store.size(image.original_key))
            cog_path = workdir / "cog.tif"
            convert_to_cog(source, cog_path, info, workdir)
            rescale = display_rescale(str(cog_path), info.display_bands)
            store.put_file(cog_key, cog_path, move=True)
    except RasterRejected as exc:
        store.delete(cog_key)
        raise JobFailed(str(exc)) from exc
    except BaseException:
        store.delete(cog_key)
        raise
    return IngestedCog(cog_key=cog_key, version=version, info=info, rescale=rescale)


def ingest_image(image_id: str) -> str:
    """Run the ingest of one image (claim, convert, mark ready or failed); returns the image's final status."""
    return run_row_job(INGEST, image_id, convert_upload)
