"""The imagery app's sweep of stale rows: no upload or ingest stays unfinished forever.

Called by the periodic ``Job.SWEEP_STALE_JOBS`` (workers/sweeper.py) with the clock and the staleness
cut-off. An image's message can be lost (Redis down when it was queued, a worker killed after the broker
forgot its unacknowledged task); the row is the truth, so an image uploaded or ingesting without movement
for STALE_JOB_TIMEOUT_S is queued again (``updated_at`` is bumped, so it is asked for at most once per
timeout), an image whose every attempt stopped its worker is failed, and an upload started but never
committed is given up and its space freed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from imagery.ingest import enqueue_ingest, worker_stopped_message
from imagery.models import Image
from imagery.storage import get_blob_store, image_cog_prefix, image_prefix
from imagery.uploads import UPLOAD_URL_TTL_S

UPLOAD_ABANDONED = "The upload was started but never finished. Upload the file again."


def sweep_stale_images(now: datetime, stale_before: datetime) -> dict[str, int]:
    """Uploaded but never picked up, or ingesting with no heartbeat: queue the ingest again."""
    stale = Image.objects.filter(
        status__in=(Image.Status.UPLOADED, Image.Status.INGESTING), updated_at__lt=stale_before
    )
    # Every attempt ended with the worker gone: the claim would refuse it; say so now.
    spent = list(stale.filter(ingest_attempts__gte=settings.INGEST_MAX_ATTEMPTS).values_list("pk", flat=True))
    failed = stale.filter(pk__in=spent).update(
        status=Image.Status.FAILED, error=worker_stopped_message(settings.INGEST_MAX_ATTEMPTS), updated_at=now
    )
    for image_id in spent:
        get_blob_store().delete_prefix(image_cog_prefix(image_id))
    requeued = list(stale)
    for image in requeued:
        Image.objects.filter(pk=image.pk).update(updated_at=now)
        enqueue_ingest(image)
    # Started but never committed, long after the upload URL expired: give up and free the space.
    abandoned = list(
        Image.objects.filter(
            status=Image.Status.UPLOADING, created_at__lt=now - timedelta(seconds=2 * UPLOAD_URL_TTL_S)
        ).values_list("pk", flat=True)
    )
    Image.objects.filter(pk__in=abandoned).update(status=Image.Status.FAILED, error=UPLOAD_ABANDONED)
    for image_id in abandoned:
        get_blob_store().delete_prefix(image_prefix(image_id))
    return {"images_requeued": len(requeued), "images_failed": failed, "uploads_abandoned": len(abandoned)}
