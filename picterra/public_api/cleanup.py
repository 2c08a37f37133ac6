"""The public API's temporary files expire: upload tickets and written downloads do not pile up forever.

Each one is recorded as a `TemporaryFile` row with an expiry *before* anything is handed out or written,
so every blob of these kinds has a row while it may still be wanted. `expire_public_api_temporaries` (run
by the sweeper) deletes what has expired: the blob, the row, and for a raster whose upload was started but
never committed, the waiting raster itself. GeoJSON upload blobs left from before tickets had rows are
removed too: under `public-api/uploads/`, a blob without a ticket row is an orphan.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from imagery.models import Image
from imagery.storage import get_blob_store, image_prefix
from imagery.uploads import UPLOAD_URL_TTL_S
from picterra.organizations.models import Organization
from picterra.public_api.models import Operation, TemporaryFile

logger = logging.getLogger(__name__)

UPLOADS_PREFIX = "public-api/uploads/"
#: A GeoJSON upload URL is signed for 24 h; its file stays as long again for a late commit, then goes.
GEOJSON_UPLOAD_KEEP_S = 2 * 24 * 3600
#: Like the sweeper's rule for any upload: long after its URL expired, a raster never committed is abandoned.
RASTER_UPLOAD_KEEP_S = 2 * UPLOAD_URL_TTL_S
#: A written download (vector layer) is kept a day: clients fetch it right after the operation ends.
DOWNLOAD_KEEP_S = 24 * 3600


def record_geojson_upload(organization: Organization, upload_id: str, key: str) -> TemporaryFile:
    """Before the upload URL is handed out: the ticket and when its file goes."""
    return TemporaryFile.objects.create(
        id=upload_id,
        organization=organization,
        kind=TemporaryFile.Kind.GEOJSON_UPLOAD,
        key=key,
        expires_at=timezone.now() + timedelta(seconds=GEOJSON_UPLOAD_KEEP_S),
    )


def record_raster_upload(organization: Organization, image: Image) -> TemporaryFile:
    """A raster waiting for its bytes; `raster_committed` drops the ticket, expiry removes the raster."""
    return TemporaryFile.objects.create(
        organization=organization,
        kind=TemporaryFile.Kind.RASTER_UPLOAD,
        image=image,
        expires_at=timezone.now() + timedelta(seconds=RASTER_UPLOAD_KEEP_S),
    )


def raster_committed(image: Image) -> None:
    TemporaryFile.objects.filter(kind=TemporaryFile.Kind.RASTER_UPLOAD, image=image).delete()


def record_download(organization: Organization, key: str) -> TemporaryFile:
    """Before the file is written, so a crash in between leaves a row that expires, never a lost blob."""
    return TemporaryFile.objects.create(
        organization=organization,
        kind=TemporaryFile.Kind.DOWNLOAD,
        key=key,
        expires_at=timezone.now() + timedelta(seconds=DOWNLOAD_KEEP_S),
    )


def expire_public_api_temporaries(now: datetime | None = None) -> dict[str, int]:
    """Delete expired upload tickets and downloads (blobs and rows); returns how many of each went.

    Safe to run at any time and more than once: a blob is deleted before its row, so an interrupted run
    leaves a row that the next run finishes.
    """
    now = now or timezone.now()
    store = get_blob_store()
    expired = TemporaryFile.objects.filter(expires_at__lt=now)
    result = {"geojson_uploads": 0, "raster_uploads": 0, "rasters_removed": 0, "downloads": 0, "orphan_uploads": 0}

    for ticket in expired.filter(kind=TemporaryFile.Kind.GEOJSON_UPLOAD).iterator():
        store.delete(ticket.key)
        ticket.delete()
        result["geojson_uploads"] += 1

    for ticket in expired.filter(kind=TemporaryFile.Kind.DOWNLOAD).iterator():
        store.delete(ticket.key)
        if ticket.operation_id:
            _forget_blob(ticket.operation_id, ticket.key)
        ticket.delete()
        result["downloads"] += 1

    for ticket in expired.filter(kind=TemporaryFile.Kind.RASTER_UPLOAD).iterator():
        if ticket.image_id and _remove_if_never_committed(ticket.image_id):
            result["rasters_removed"] += 1
        TemporaryFile.objects.filter(pk=ticket.pk).delete()
        result["raster_uploads"] += 1

    result["orphan_uploads"] = _remove_orphan_uploads(store)
    if any(result.values()):
        logger.info("public API temporaries expired: %s", result)
    return result


def _forget_blob(operation_id, key: str) -> None:
    """The operation stops signing a link to a file that is gone (its place in the results stays null)."""
    with transaction.atomic():
        operation = Operation.objects.select_for_update().filter(pk=operation_id).first()
        if operation is None:
            return
        kept = [r for r in operation.blob_refs or [] if not (isinstance(r, dict) and r.get("key") == key)]
        if kept != operation.blob_refs:
            Operation.objects.filter(pk=operation_id).update(blob_refs=kept)


def _remove_if_never_committed(image_id) -> bool:
    """Delete the raster when its bytes were never committed (still waiting, or failed as abandoned)."""
    with transaction.atomic():
        image = Image.objects.select_for_update().filter(pk=image_id).first()
        never_committed = image is not None and (
            image.status == Image.Status.UPLOADING or (image.status == Image.Status.FAILED and image.file_size is None)
        )
        if not never_committed:
            return False
        image.delete()
    get_blob_store().delete_prefix(image_prefix(image_id))
    return True


def _remove_orphan_uploads(store) -> int:
    """GeoJSON upload blobs no ticket row accounts for (written before tickets had rows).

    The blobs are listed before the rows are read: a ticket's row is committed before its URL is handed
    out, so a blob seen here whose row is not found afterwards has no live ticket.
    """
    keys = list(store.list(UPLOADS_PREFIX))
    if not keys:
        return 0
    live: set[str] = set()
    tickets = TemporaryFile.objects.filter(kind=TemporaryFile.Kind.GEOJSON_UPLOAD)
    for start in range(0, len(keys), 500):  # bounded IN lists (SQLite's variable limit)
        live.update(tickets.filter(key__in=keys[start : start + 500]).values_list("key", flat=True))
    orphans = [key for key in keys if key not in live]
    for key in orphans:
        store.delete(key)
    return len(orphans)
