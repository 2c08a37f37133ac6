"""Where a training or detection run stands: claims, progress and final states of the rows this app owns.

The job functions (workers/pipelines.py) load, call the ML core and return what to store; what a row's state is,
when a job may take it, how progress is counted, what is stored and which final state a run ends in is decided
here, beside the models: one ``picterra.jobs.RowState`` per kind of row (``TRAINING_RUN``, ``DETECTION_CELL``,
``DETECTION_FINISH``), run by ``picterra.jobs.run_row_job``. Every claim is a conditional UPDATE that counts the
attempt before any work, so a job delivered twice runs once, a job that keeps stopping its worker ends `failed`
after a bounded number of attempts (TRAINING_MAX_ATTEMPTS, DETECTION_CELL_ATTEMPTS, DETECTION_FINISH_ATTEMPTS),
and a job whose row another worker is moving (fresh heartbeat) answers ``RUNNING_ELSEWHERE`` so its task comes
back later.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from shapely.geometry.base import BaseGeometry

from detectors.exports import write_cell_part
from detectors.models import DetectedObject, DetectionCell, DetectionRun, RunStatus, TrainingRun, training_run_prefix
from detectors.results import NewObject, insert_objects
from imagery.storage import get_blob_store
from picterra.jobs import RUNNING_ELSEWHERE, Job, RowMoved, RowState, enqueue

log = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
LOSS_HISTORY_LENGTH = 300
ACTIVE = (RunStatus.PENDING, RunStatus.RUNNING)
CELLS_LEFT = (DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING)


# --- training runs ----------------------------------------------------------------------------------------------


def claim_training_run(run_id: str) -> str:
    """Take a queued run, or one whose worker died (heartbeat stale), counting the attempt first.

    A fresh heartbeat may be a live worker or one that died a moment ago: RUNNING_ELSEWHERE asks the
    caller to look again once a heartbeat would have gone stale, so a duplicate message (the sweeper's or
    the broker's) never runs a run twice at once. Past TRAINING_MAX_ATTEMPTS the run is failed: it kept
    stopping its worker (out of memory), and a redelivery would only do that again.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_HEARTBEAT_STALE_S)
    takeable = Q(status=RunStatus.PENDING) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before)
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).only("status", "attempts").first()
        if run is None:
            return "deleted"
        if not TrainingRun.objects.filter(takeable, pk=run_id).exists():
            return RUNNING_ELSEWHERE if run.status == RunStatus.RUNNING else run.status
        if run.attempts >= settings.TRAINING_MAX_ATTEMPTS:
            TrainingRun.objects.filter(pk=run_id).update(
                status=RunStatus.FAILED,
                error=f"Training stopped its worker {run.attempts} times; it may need less memory. "
                "Try fewer or smaller images, or contact your administrator.",
                finished_at=now,
                heartbeat_at=now,
            )
            return RunStatus.FAILED
        TrainingRun.objects.filter(pk=run_id).update(
            status=RunStatus.RUNNING,
            started_at=Coalesce(F("started_at"), Value(now)),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
        )
    return RunStatus.RUNNING


def report_training_progress(
    run_id: str, step: int, total: int, history: list[float], seconds_left: float | None = None
) -> None:
    """Write the step, the loss curve and the seconds left measured from the step rate (None: not known yet)
    (also the run's heartbeat); ``RowMoved`` when the run stopped (cancelled, or failed by the sweeper) so the
    training loop ends at once."""
    progress = {"step": step, "total": total, "loss": history[-1], "loss_history": history[-LOSS_HISTORY_LENGTH:]}
    if seconds_left is not None:
        progress["seconds_left"] = round(seconds_left, 1)
    _write_training_progress(run_id, progress)


#: What the Train panel says while a training waits for a GPU machine's training slot (workers/gpu_slots.py).
WAITING_FOR_GPU = "Waiting for the GPU: other trainings are using it. This one starts as soon as one ends."


def report_training_waiting(run_id: str) -> None:
    """Tell the user the run waits for a training slot (also the run's heartbeat); ``RowMoved`` when the run was
    cancelled or ended meanwhile, so it stops waiting."""
    _write_training_progress(run_id, {"step": 0, "waiting": WAITING_FOR_GPU})


def _write_training_progress(run_id: str, progress: dict) -> None:
    moved = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        heartbeat_at=timezone.now(), progress=progress
    )
    if not moved:
        raise RowMoved(TrainingRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "deleted")


def training_summary(card: dict) -> dict:
    """What was trained and for how long, from the model card, for the run's final progress: the Train panel
    shows ``summary`` in plain words. Not in ``stats``: the public API returns those as the spec's counts."""
    done = card.get("training", {})
    # The last progress write may be a few steps behind (writes are throttled): the card has the final step.
    return {
        **({"step": done["steps"]} if "steps" in done else {}),
        "summary": card.get("summary", ""),
        "seconds": done.get("seconds"),
        "stop_reason": done.get("stop_reason", ""),
    }


def end_training_run(run_id: str, status: str, **fields) -> None:
    """The final state of a running training run (a cancelled one stays cancelled)."""
    now = timezone.now()
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=status, finished_at=now, heartbeat_at=now, **fields
    )


@dataclass(frozen=True)
class TrainedVersion:
    """What a training attempt produced: its files (under ``prefix``, one per attempt), loss curve, model
    card, the score on accuracy areas and the statistics of its inputs."""

    prefix: str
    keys: dict[str, str]
    history: list[float]
    card: dict
    metrics: dict
    stats: dict


class TrainingRunState(RowState):
    """A training run's row: ``heartbeat_at`` moves with progress reports and the job's heartbeat."""

    def claim(self, run_id: str) -> str:
        return claim_training_run(run_id)

    def beat(self, run_id: str) -> None:
        TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(heartbeat_at=timezone.now())

    def succeed(self, run_id: str, result: TrainedVersion) -> str:
        """The run points to this attempt's files; files of other attempts (a worker that died mid-run, a
        duplicate that lost) are removed, and so are this attempt's if the run ended meanwhile."""
        progress = TrainingRun.objects.filter(pk=run_id).values_list("progress", flat=True).first() or {}
        end_training_run(
            run_id,
            RunStatus.SUCCEEDED,
            progress={
                **progress,
                "loss_history": result.history[-LOSS_HISTORY_LENGTH:],
                **training_summary(result.card),
            },
            metrics=result.metrics,
            stats=result.stats,
            weights_key=next((k for name, k in result.keys.items() if name.endswith(".safetensors")), ""),
            model_card_key=next((k for name, k in result.keys.items() if name.endswith(".json")), ""),
        )
        row = TrainingRun.objects.filter(pk=run_id).values_list("status", "weights_key").first()
        store = get_blob_store()
        if row is None or not row[1].startswith(result.prefix):
            store.delete_prefix(result.prefix)  # another attempt finished first, or the run ended: not ours
            return row[0] if row else "deleted"
        run_prefix = training_run_prefix(run_id)
        attempts = {key[: key.index("/", len(run_prefix)) + 1] for key in store.list(run_prefix)}
        for other in attempts - {result.prefix}:
            store.delete_prefix(other)
        return RunStatus.SUCCEEDED

    def fail(self, run_id: str, message: str) -> None:
        end_training_run(run_id, RunStatus.FAILED, error=message)

    def unexpected_failure(self, error: Exception) -> str:
        return "Training failed unexpectedly. Please try again."


TRAINING_RUN = TrainingRunState()


# --- detection cells ----------------------------------------------------------------------------------------------


def cell_stopped_message(times: int) -> str:
    return f"Detecting in this part of the image stopped the worker {times} times; it may need less memory."


def claim_detection_cell(cell_id: str) -> str:
    """Take a cell of a live run, counting the attempt (and moving updated_at, its heartbeat) before any work.

    A worker killed by this cell has counted it; a redelivery past DETECTION_CELL_ATTEMPTS fails the cell.
    Returns ``running`` when claimed, else ``failed`` or ``skipped`` (cancelled, done, deleted).
    """
    now = timezone.now()
    claimable = DetectionCell.objects.filter(pk=cell_id, status__in=CELLS_LEFT, run__status__in=ACTIVE)
    claimed = claimable.filter(attempts__lt=settings.DETECTION_CELL_ATTEMPTS).update(
        status=DetectionCell.Status.RUNNING, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        if claimable.exists():
            fail_detection_cell(cell_id, cell_stopped_message(settings.DETECTION_CELL_ATTEMPTS))
            return "failed"
        return "skipped"
    run_id = DetectionCell.objects.filter(pk=cell_id).values_list("run_id", flat=True).get()
    # A cell runs again (retry of failed cells): the final step that follows starts with a fresh budget.
    DetectionRun.objects.filter(pk=run_id, finish_attempts__gt=0).update(finish_attempts=0)
    DetectionRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(status=RunStatus.RUNNING, started_at=now)
    return RunStatus.RUNNING


@dataclass(frozen=True)
class CellObjects:
    """What detecting in one cell found (unsaved rows) and how long it took; ``lonlat``: the rows' geometries as
    shapely lon/lat polygons, one per row, for the cell's export part (empty: read from the rows)."""

    rows: list[NewObject]
    seconds: float
    lonlat: Sequence[BaseGeometry] = ()


class DetectionCellState(RowState):
    """A grid cell's row: ``updated_at`` is its heartbeat; errors are retried with backoff up to
    DETECTION_CELL_ATTEMPTS, then the cell fails with the reason and the run finishes without it."""

    def claim(self, cell_id: str) -> str:
        return claim_detection_cell(cell_id)

    def beat(self, cell_id: str) -> None:
        DetectionCell.objects.filter(pk=cell_id, status=DetectionCell.Status.RUNNING).update(updated_at=timezone.now())

    def succeed(self, cell_id: str, result: CellObjects) -> str:
        """Replace the cell's objects with the found ones and mark it done, unless it was cancelled meanwhile;
        the last cell to end queues the run's final step."""
        with transaction.atomic():
            cell = DetectionCell.objects.filter(pk=cell_id, status=DetectionCell.Status.RUNNING).first()
            if cell is None:
                return "cancelled"
            DetectedObject.objects.filter(detection_run_id=cell.run_id, image_id=cell.image_id, cell=cell.key).delete()
            insert_objects(result.rows)
            DetectionCell.objects.filter(pk=cell.pk).update(
                status=DetectionCell.Status.DONE,
                objects_count=len(result.rows),
                seconds=result.seconds,
                error="",
                export_part="",  # whatever part an earlier attempt left holds objects just replaced
                updated_at=timezone.now(),
            )
            refresh_detection_progress(cell.run_id)
        try:
            write_cell_part(cell, result.rows, get_blob_store(), result.lonlat)
        except Exception:  # an optimisation only: without its part, the exports read the cell's objects again
            log.warning("export part of cell %s not written", cell_id, exc_info=True)
        finish_when_no_cell_left(cell.run_id)
        return "done"

    def fail(self, cell_id: str, message: str) -> None:
        fail_detection_cell(cell_id, message)

    def unexpected_failure(self, error: Exception) -> str:
        return f"{type(error).__name__}: {error}"

    def retry_after(self, cell_id: str, error: Exception) -> int | None:
        """The cell back to pending and the wait before its next attempt, while attempts are left."""
        attempts = DetectionCell.objects.filter(pk=cell_id).values_list("attempts", flat=True).first() or 0
        if attempts >= settings.DETECTION_CELL_ATTEMPTS:
            return None
        DetectionCell.objects.filter(pk=cell_id, status=DetectionCell.Status.RUNNING).update(
            status=DetectionCell.Status.PENDING
        )
        return min(60, 2**attempts)


DETECTION_CELL = DetectionCellState()


def fail_detection_cell(cell_id: str, message: str) -> None:
    """A cell that kept failing: record why, and let the run finish without it."""
    with transaction.atomic():
        cell = DetectionCell.objects.filter(pk=cell_id).first()
        if cell is None:
            return
        DetectionCell.objects.filter(pk=cell_id).exclude(status=DetectionCell.Status.CANCELLED).update(
            status=DetectionCell.Status.FAILED, error=message[:2000]
        )
        refresh_detection_progress(cell.run_id)
    finish_when_no_cell_left(cell.run_id)


# --- detection runs -----------------------------------------------------------------------------------------------


def refresh_detection_progress(run_id, force: bool = False) -> None:
    """Counters derived from the cells (never incremented), so replays cannot skew them.

    Aggregating every cell after every cell is quadratic in cells (165,000 of them at country scale), so
    the counters are recomputed at most every PROGRESS_EVERY_S, and always for the last cell.
    """
    run = DetectionRun.objects.get(pk=run_id)
    now = timezone.now()
    recent = run.heartbeat_at and (now - run.heartbeat_at).total_seconds() < PROGRESS_EVERY_S
    if recent and not force and cells_left(run_id):
        return
    counts = dict(
        DetectionCell.objects.filter(run_id=run_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    done = DetectionCell.objects.filter(run_id=run_id, status=DetectionCell.Status.DONE)
    totals = done.aggregate(objects=Sum("objects_count"), pixels=Sum("pixels"))
    pixels = totals["pixels"] or 0
    elapsed = max(1e-6, (now - (run.started_at or run.created_at)).total_seconds())
    remaining = counts.get(DetectionCell.Status.PENDING, 0) + counts.get(DetectionCell.Status.RUNNING, 0)
    mp_done = pixels / 1e6
    rate = mp_done / elapsed
    total_mp = float(run.progress.get("megapixels_total", 0.0))
    DetectionRun.objects.filter(pk=run_id).update(
        cells_done=counts.get(DetectionCell.Status.DONE, 0),
        cells_failed=counts.get(DetectionCell.Status.FAILED, 0),
        objects_count=totals["objects"] or 0,
        heartbeat_at=now,
        progress={
            **run.progress,
            "megapixels_done": round(mp_done, 3),
            "megapixels_per_second": round(rate, 4),
            "seconds_left": round((total_mp - mp_done) / rate, 1) if rate > 0 and remaining else 0,
        },
    )


def cells_left(run_id) -> bool:
    return DetectionCell.objects.filter(run_id=run_id, status__in=CELLS_LEFT).exists()


def finish_when_no_cell_left(run_id) -> None:
    """Checked after the cell's transaction committed: two cells ending at once each see the other's
    result, so the last one is never missed (both may ask; the final step runs once)."""
    if not cells_left(run_id):
        refresh_detection_progress(run_id, force=True)
        enqueue(Job.FINISH_DETECTION, run_id)


def claim_detection_finish(run_id: str) -> str:
    """Count a start of the final step, unless another one is working (its heartbeat is fresh).

    A worker killed while merging or exporting has counted its attempt; its redelivered message waits
    for the heartbeat to go stale (RUNNING_ELSEWHERE), then takes over, or past DETECTION_FINISH_ATTEMPTS
    fails the run. Duplicates (two cells ending at once each queue the final step) do not count twice.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_HEARTBEAT_STALE_S)
    if cells_left(run_id):
        return DetectionRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "deleted"
    free = Q(finish_attempts=0) | Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    runs = DetectionRun.objects.filter(free, pk=run_id, status__in=ACTIVE)
    if runs.filter(finish_attempts__lt=settings.DETECTION_FINISH_ATTEMPTS).update(
        finish_attempts=F("finish_attempts") + 1, heartbeat_at=now
    ):
        return RunStatus.RUNNING
    if runs.update(
        status=RunStatus.FAILED,
        error=f"Putting the results together stopped the worker {settings.DETECTION_FINISH_ATTEMPTS} times; "
        "it may need less memory. Please contact your administrator.",
        finished_at=now,
        heartbeat_at=now,
    ):
        return RunStatus.FAILED
    status = DetectionRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
    return RUNNING_ELSEWHERE if status in ACTIVE else status or "deleted"


def unfinished_run(run_id) -> DetectionRun | None:
    """The run, if it is still active and every cell has ended (else the final step has nothing to do)."""
    run = DetectionRun.objects.filter(pk=run_id).first()
    if run is None or run.status not in ACTIVE or run.cells.filter(status__in=CELLS_LEFT).exists():
        return None
    return run


def end_detection_run(run_id, keys: dict[str, str]) -> str:
    """The final state from the cells, with the run's row locked; a run cancelled (or ended by another
    caller) meanwhile keeps its state."""
    with transaction.atomic():
        run = DetectionRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status not in ACTIVE:
            return run.status if run else "deleted"
        if run.cells.filter(status__in=CELLS_LEFT).exists():
            return run.status
        cells = run.cells.all()
        failed = cells.filter(status=DetectionCell.Status.FAILED).count()
        if failed == 0:
            status, error = RunStatus.SUCCEEDED, ""
        elif failed < cells.count():
            status, error = (
                RunStatus.PARTIAL,
                f"{failed} of {cells.count()} grid cells failed; retry them to complete the run.",
            )
        else:
            status, error = RunStatus.FAILED, "Every grid cell failed: " + (cells.first().error or "unknown error")
        DetectionRun.objects.filter(pk=run.pk).update(
            status=status,
            error=error,
            result_keys=keys,
            # Counted, not derived from the cells: the merge removed rows the cells had counted.
            objects_count=DetectedObject.objects.filter(detection_run=run).count(),
            finished_at=timezone.now(),
            heartbeat_at=timezone.now(),
        )
    return status


class DetectionFinishState(RowState):
    """A detection run's final step (merge, exports, final state), on the run's row: ``heartbeat_at`` and
    ``finish_attempts``. Its success is the run's final state from its cells."""

    def claim(self, run_id: str) -> str:
        return claim_detection_finish(run_id)

    def beat(self, run_id: str) -> None:
        DetectionRun.objects.filter(pk=run_id, status__in=ACTIVE).update(heartbeat_at=timezone.now())

    def succeed(self, run_id: str, result: dict[str, str]) -> str:
        return end_detection_run(run_id, result)

    def fail(self, run_id: str, message: str) -> None:
        DetectionRun.objects.filter(pk=run_id, status__in=ACTIVE).update(
            status=RunStatus.FAILED, error=message, finished_at=timezone.now()
        )

    def unexpected_failure(self, error: Exception) -> str:
        return "Putting the results together failed. Please run the detection again."


DETECTION_FINISH = DetectionFinishState()
