"""Turn an uploaded file into a ready image: validate, convert to COG, store, record metadata.

Idempotent and safe to retry: the row is claimed with a conditional UPDATE that counts the attempt, each
attempt writes its own COG (``images/<id>/cog-<version>.tif``; a late duplicate never removes the one in
use, and the winner removes the others), and nothing is marked ready until the COG is in place.
"""

from __future__ import annotations

import logging
import tempfile
import uuid
from pathlib import Path

import rasterio
from django.conf import settings
from django.contrib.gis.geos import GEOSGeometry
from django.db.models import F
from django.utils.timezone import now

from imagery.cog import SNIFF_BYTES, RasterRejected, convert_to_cog, display_rescale, inspect_raster
from imagery.models import Image
from imagery.storage import get_blob_store, image_cog_key, image_cog_prefix
from picterra.jobs import Job, enqueue, heartbeat

logger = logging.getLogger(__name__)

CLAIMABLE = (Image.Status.UPLOADED, Image.Status.INGESTING)


def enqueue_ingest(image: Image) -> None:
    """Queue ingest once the surrounding transaction has committed, so the worker finds the row."""
    enqueue(Job.INGEST_IMAGE, image.pk)


def worker_stopped_message(times: int) -> str:
    return f"Processing this file stopped the worker {times} times; it may be too large or damaged."


def ingest_image(image_id: str) -> str:
    """Run the ingest of one image; returns the image's final status.

    The claim counts the attempt before any work (a worker killed by the file, e.g. out of memory, has
    counted it) and moves updated_at, the heartbeat the sweeper reads; past INGEST_MAX_ATTEMPTS the
    image is failed instead of being opened again.
    """
    claimed = Image.objects.filter(
        pk=image_id, status__in=CLAIMABLE, ingest_attempts__lt=settings.INGEST_MAX_ATTEMPTS
    ).update(status=Image.Status.INGESTING, error="", ingest_attempts=F("ingest_attempts") + 1, updated_at=now())
    if not claimed:
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
    image = Image.objects.get(pk=image_id)
    store = get_blob_store()
    version = uuid.uuid4().hex[:16]
    cog_key = image_cog_key(image.pk, version)
    beat = Image.objects.filter(pk=image_id, status=Image.Status.INGESTING)
    try:
        with (
            heartbeat(lambda: beat.update(updated_at=now())),
            tempfile.TemporaryDirectory(prefix="ingest-") as tmp,
            rasterio.Env(**store.gdal_env()),
        ):
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
        _fail(image_id, str(exc), cog_key)
        return Image.Status.FAILED
    except Exception as exc:
        _fail(
            image_id, f"Processing failed unexpectedly ({type(exc).__name__}). Try uploading the file again.", cog_key
        )
        raise
    updated = Image.objects.filter(pk=image_id, status=Image.Status.INGESTING).update(
        status=Image.Status.READY,
        cog_key=cog_key,
        cog_version=version,
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
        rescale=rescale,
    )
    if not updated:
        # Deleted, failed by the sweeper, or finished by a duplicate attempt while we worked: keep the
        # row as it is and leave no orphaned COG of ours behind.
        store.delete(cog_key)
        image = Image.objects.filter(pk=image_id).only("status").first()
        return image.status if image else "deleted"
    # COGs of attempts that crashed before finishing.
    for key in store.list(image_cog_prefix(image_id)):
        if key != cog_key:
            store.delete(key)
    return Image.Status.READY


def _fail(image_id: str, message: str, cog_key: str) -> None:
    get_blob_store().delete(cog_key)
    Image.objects.filter(pk=image_id).update(status=Image.Status.FAILED, error=message)
