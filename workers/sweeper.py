"""No job stays unfinished forever: rows that stopped moving are queued again, or failed with a reason.

A job's message can be lost (Redis down when it was queued, an embedded Redis restarted without
persistence, a worker killed after the broker forgot its unacknowledged task). The row is the truth, so
every STALE_JOB_TIMEOUT_S without movement the sweeper sends the message again: queued rows, and rows
whose worker's heartbeat stopped. Sending twice is safe: each pipeline claims its row with a conditional
UPDATE, a duplicate of a job a live worker is moving finds it busy (fresh heartbeat) and does nothing, and
each claim counts an attempt, so a job that keeps stopping its worker ends `failed` after a bounded number
(INGEST_MAX_ATTEMPTS, TRAINING_MAX_ATTEMPTS, DETECTION_CELL_ATTEMPTS, DETECTION_FINISH_ATTEMPTS).
`queued_at` (runs) and `updated_at` (images, cells) are bumped on every re-queue, so a row is asked for
at most once per STALE_JOB_TIMEOUT_S.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from detectors.models import DetectionCell, DetectionRun, RunStatus, TrainingRun
from imagery.ingest import enqueue_ingest, worker_stopped_message
from imagery.models import Image
from imagery.purge import purge_pending_blobs
from imagery.storage import get_blob_store, image_cog_prefix, image_prefix
from imagery.uploads import UPLOAD_URL_TTL_S
from picterra.jobs import enqueue_on_commit
from picterra.public_api.cleanup import expire_public_api_temporaries

logger = logging.getLogger(__name__)

WORKER_LOST = "The worker processing this stopped responding. Please try again."
UPLOAD_ABANDONED = "The upload was started but never finished. Upload the file again."
ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)
CELLS_LEFT = (DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING)


def sweep_stale_jobs(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.STALE_JOB_TIMEOUT_S)
    result = {
        **_sweep_images(now, stale_before),
        **_sweep_training_runs(now, stale_before),
        **_sweep_detection_runs(now, stale_before),
    }
    if any(result.values()):
        logger.warning("sweeper: %s", result)
    return result


def sweep_storage(now: datetime | None = None) -> dict:
    """Storage follows the data: purges whose message was lost or whose store call failed, and the public
    API's upload tickets and downloads past their expiry."""
    result = {**purge_pending_blobs(), **expire_public_api_temporaries(now or timezone.now())}
    if any(result.values()):
        logger.info("storage sweep: %s", result)
    return result


def _sweep_images(now: datetime, stale_before: datetime) -> dict:
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


def _stopped_moving(stale_before: datetime) -> Q:
    """A run nobody moved lately: queued (or re-queued) long ago and no fresh heartbeat."""
    return Q(status__in=ACTIVE, queued_at__lt=stale_before) & (
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    )


def _sweep_training_runs(now: datetime, stale_before: datetime) -> dict:
    from workers.tasks import train_detector

    stopped = TrainingRun.objects.filter(_stopped_moving(stale_before))
    failed = stopped.filter(status=RunStatus.RUNNING, attempts__gte=settings.TRAINING_MAX_ATTEMPTS).update(
        status=RunStatus.FAILED, error=WORKER_LOST, finished_at=now, heartbeat_at=now
    )
    requeued = list(stopped.values_list("pk", flat=True))
    TrainingRun.objects.filter(pk__in=requeued).update(queued_at=now)
    for run_id in requeued:
        enqueue_on_commit(train_detector, str(run_id))
    return {"training_runs_requeued": len(requeued), "runs_failed": failed}


def _sweep_detection_runs(now: datetime, stale_before: datetime) -> dict:
    """Queue again the cells left of a run that stopped moving, or its final step when no cell is left.

    A cell that a live worker is predicting beats (its updated_at is fresh): neither it nor its run is
    touched. The claims bound the attempts, so these re-queues end in `done`/`failed` cells and a final state.
    """
    from workers.tasks import detect_cell, finish_detection

    busy_cell = DetectionCell.objects.filter(
        run=OuterRef("pk"), status=DetectionCell.Status.RUNNING, updated_at__gte=stale_before
    )
    stopped = list(
        DetectionRun.objects.filter(_stopped_moving(stale_before))
        .exclude(Exists(busy_cell))
        .values_list("pk", flat=True)
    )
    cells_requeued, finishes_requeued = 0, []
    for run_id in stopped:
        left = DetectionCell.objects.filter(run_id=run_id, status__in=CELLS_LEFT)
        if not left.exists():
            finishes_requeued.append(run_id)  # every cell ended but the final step's message was lost
            enqueue_on_commit(finish_detection, str(run_id))
            continue
        cells = list(left.filter(updated_at__lt=stale_before).values_list("pk", flat=True))
        DetectionCell.objects.filter(pk__in=cells).update(updated_at=now)
        for cell_id in cells:
            enqueue_on_commit(detect_cell, str(cell_id))
        cells_requeued += len(cells)
    DetectionRun.objects.filter(pk__in=stopped).update(queued_at=now)
    return {"detection_cells_requeued": cells_requeued, "detections_finished": len(finishes_requeued)}
