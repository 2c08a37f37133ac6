"""Celery tasks: thin wrappers keyed by ids that call one pipeline function each.

Arguments are ids, never model instances or file contents. The database row is the truth about a
job; a task that is delivered twice (acks_late after a worker died, or queued again by the sweeper after
its message was lost) finds the row and acts idempotently: each pipeline claims its row with a conditional
UPDATE that counts the attempt, so a job that keeps killing its worker ends failed after a bounded number.
"""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_process_init


@worker_process_init.connect
def share_cpu_cores(**_) -> None:
    """Each pool process gets its share of the cores for PyTorch (prediction; training sets its own)."""
    from django.conf import settings

    try:
        import torch
    except ImportError:  # a worker image without the ML stack (ingest only)
        return
    torch.set_num_threads(settings.WORKER_TORCH_THREADS)


@shared_task(name="workers.tasks.ingest_image", acks_late=True)
def ingest_image(image_id: str) -> str:
    from imagery.ingest import ingest_image as run_ingest

    return run_ingest(image_id)


@shared_task(name="workers.tasks.train_detector", bind=True, acks_late=True, max_retries=None)
def train_detector(self, run_id: str) -> str:
    """A redelivery that finds the run busy elsewhere comes back later: that worker may have died."""
    from django.conf import settings

    from workers.pipelines import RUNNING_ELSEWHERE, run_training

    result = run_training(run_id)
    if result == RUNNING_ELSEWHERE:
        raise self.retry(countdown=settings.JOB_HEARTBEAT_STALE_S)
    return result


@shared_task(name="workers.tasks.detect_cell", bind=True, acks_late=True, max_retries=None)
def detect_cell(self, cell_id: str) -> str:
    """One grid cell. Errors are retried with backoff; a cell that keeps failing is marked failed."""
    from django.conf import settings

    from detectors.models import DetectionCell
    from workers.pipelines import fail_detection_cell, release_detection_cell, run_detection_cell

    try:
        return run_detection_cell(cell_id)
    except Exception as exc:
        attempts = DetectionCell.objects.filter(pk=cell_id).values_list("attempts", flat=True).first() or 0
        if attempts < settings.DETECTION_CELL_ATTEMPTS:
            release_detection_cell(cell_id)
            raise self.retry(exc=exc, countdown=min(60, 2**attempts)) from exc
        fail_detection_cell(cell_id, f"{type(exc).__name__}: {exc}")
        raise


@shared_task(name="workers.tasks.finish_detection", bind=True, acks_late=True, max_retries=None)
def finish_detection(self, run_id: str) -> str:
    """A delivery that finds the final step busy elsewhere comes back later: that worker may have died."""
    from django.conf import settings

    from workers.pipelines import RUNNING_ELSEWHERE
    from workers.pipelines import finish_detection as run_finish

    result = run_finish(run_id)
    if result == RUNNING_ELSEWHERE:
        raise self.retry(countdown=settings.JOB_HEARTBEAT_STALE_S)
    return result


@shared_task(name="workers.tasks.sweep_stale_jobs")
def sweep_stale_jobs() -> dict:
    from workers.sweeper import sweep_stale_jobs as run_sweep

    return run_sweep()


@shared_task(name="workers.tasks.sweep_storage")
def sweep_storage() -> dict:
    from workers.sweeper import sweep_storage as run_sweep

    return run_sweep()


@shared_task(name="workers.tasks.purge_blobs", acks_late=True)
def purge_blobs() -> dict:
    """Delete the blobs of deleted rows (queued after each delete; the periodic storage sweep runs it too)."""
    from imagery.purge import purge_pending_blobs

    return purge_pending_blobs()


@shared_task(name="workers.tasks.ping")
def ping(marker: str) -> str:
    """Round trip used by health checks and tests: proves a worker process is consuming the queue."""
    return marker
