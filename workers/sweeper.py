"""No job stays unfinished forever: rows that stopped moving are re-queued or failed with a reason."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from detectors.models import DetectionCell, DetectionRun, RunStatus, TrainingRun
from imagery.ingest import enqueue_ingest
from imagery.models import Image
from imagery.storage import get_blob_store, image_prefix
from imagery.uploads import UPLOAD_URL_TTL_S
from picterra.jobs import enqueue_on_commit

logger = logging.getLogger(__name__)

WORKER_LOST = "The worker processing this stopped responding. Please try again."
UPLOAD_ABANDONED = "The upload was started but never finished. Upload the file again."


def sweep_stale_jobs(now=None) -> dict:
    from workers.tasks import finish_detection

    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.STALE_JOB_TIMEOUT_S)
    # Uploaded but never picked up: the queue message was lost; ask again.
    requeued = list(Image.objects.filter(status=Image.Status.UPLOADED, updated_at__lt=stale_before))
    for image in requeued:
        Image.objects.filter(pk=image.pk).update(updated_at=now)
        enqueue_ingest(image)
    failed_images = Image.objects.filter(status=Image.Status.INGESTING, updated_at__lt=stale_before).update(
        status=Image.Status.FAILED, error=WORKER_LOST
    )
    # Started but never committed, long after the upload URL expired: give up and free the space.
    abandoned = list(
        Image.objects.filter(
            status=Image.Status.UPLOADING, created_at__lt=now - timedelta(seconds=2 * UPLOAD_URL_TTL_S)
        ).values_list("pk", flat=True)
    )
    Image.objects.filter(pk__in=abandoned).update(status=Image.Status.FAILED, error=UPLOAD_ABANDONED)
    for image_id in abandoned:
        get_blob_store().delete_prefix(image_prefix(image_id))
    stale = Q(status=RunStatus.RUNNING) & (
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True, started_at__lt=stale_before)
    )
    # Every cell ended but the final step never ran (its message was lost): run it, do not fail the work.
    unfinished = list(
        DetectionRun.objects.filter(stale)
        .exclude(cells__status__in=(DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING))
        .values_list("pk", flat=True)
    )
    DetectionRun.objects.filter(pk__in=unfinished).update(heartbeat_at=now)
    for run_id in unfinished:
        enqueue_on_commit(finish_detection, str(run_id))
    failed_runs = 0
    for model in (TrainingRun, DetectionRun):
        failed_runs += model.objects.filter(stale).update(status=RunStatus.FAILED, error=WORKER_LOST, finished_at=now)
    result = {
        "detections_finished": len(unfinished),
        "images_requeued": len(requeued),
        "images_failed": failed_images,
        "uploads_abandoned": len(abandoned),
        "runs_failed": failed_runs,
    }
    if any(result.values()):
        logger.warning("sweeper: %s", result)
    return result
