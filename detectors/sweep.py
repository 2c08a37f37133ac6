"""The detectors app's sweep of stale rows: every training and detection run reaches a final state.

Called by the periodic ``Job.SWEEP_STALE_JOBS`` (workers/sweeper.py) with the clock and the staleness
cut-off. A run's messages can be lost; the row is the truth, so a run nobody moved for
STALE_JOB_TIMEOUT_S is queued again (``queued_at`` is bumped, so at most once per timeout). Sending twice
is safe: each job claims its row with a conditional UPDATE that counts an attempt, a duplicate of a job a
live worker is moving finds it busy (fresh heartbeat) and does nothing, and past TRAINING_MAX_ATTEMPTS,
DETECTION_CELL_ATTEMPTS or DETECTION_FINISH_ATTEMPTS the run or cell ends `failed`.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db.models import Exists, OuterRef, Q

from detectors.models import DetectionCell, DetectionRun, RunStatus, TrainingRun
from picterra.jobs import Job, enqueue

WORKER_LOST = "The worker processing this stopped responding. Please try again."
ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)
CELLS_LEFT = (DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING)


def sweep_stale_runs(now: datetime, stale_before: datetime) -> dict[str, int]:
    return {**_sweep_training_runs(now, stale_before), **_sweep_detection_runs(now, stale_before)}


def _stopped_moving(stale_before: datetime) -> Q:
    """A run nobody moved lately: queued (or re-queued) long ago and no fresh heartbeat."""
    return Q(status__in=ACTIVE, queued_at__lt=stale_before) & (
        Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    )


def _sweep_training_runs(now: datetime, stale_before: datetime) -> dict[str, int]:
    stopped = TrainingRun.objects.filter(_stopped_moving(stale_before))
    failed = stopped.filter(status=RunStatus.RUNNING, attempts__gte=settings.TRAINING_MAX_ATTEMPTS).update(
        status=RunStatus.FAILED, error=WORKER_LOST, finished_at=now, heartbeat_at=now
    )
    requeued = list(stopped.values_list("pk", flat=True))
    TrainingRun.objects.filter(pk__in=requeued).update(queued_at=now)
    for run_id in requeued:
        enqueue(Job.TRAIN_DETECTOR, run_id)
    return {"training_runs_requeued": len(requeued), "runs_failed": failed}


def _sweep_detection_runs(now: datetime, stale_before: datetime) -> dict[str, int]:
    """Queue again the cells left of a run that stopped moving, or its final step when no cell is left.

    A cell that a live worker is predicting beats (its updated_at is fresh): neither it nor its run is
    touched. The claims bound the attempts, so these re-queues end in `done`/`failed` cells and a final state.
    """
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
            enqueue(Job.FINISH_DETECTION, run_id)
            continue
        cells = list(left.filter(updated_at__lt=stale_before).values_list("pk", flat=True))
        DetectionCell.objects.filter(pk__in=cells).update(updated_at=now)
        for cell_id in cells:
            enqueue(Job.DETECT_CELL, cell_id)
        cells_requeued += len(cells)
    DetectionRun.objects.filter(pk__in=stopped).update(queued_at=now)
    return {"detection_cells_requeued": cells_requeued, "detections_finished": len(finishes_requeued)}
