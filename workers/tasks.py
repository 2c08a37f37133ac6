"""Celery tasks: the names of ``picterra.jobs.Job``, each a thin wrapper keyed by a row id.

Arguments are ids, never model instances or file contents. The database row is the truth about a job; a
task delivered twice (acks_late after a worker died, or queued again by a sweep after its message was lost)
finds the row and acts idempotently: every job on a row runs through ``picterra.jobs.run_row_job``, whose
``RowState`` (imagery.ingest, detectors.runs) claims the row with a conditional UPDATE that counts the
attempt, beats, stores the success and records the failure, so a job that keeps killing its worker ends
failed after a bounded number. ``RowJob`` declares what every such task shares: late acknowledgement, and
Celery retries for a row another worker is moving or an error its row's policy retries.
"""

from __future__ import annotations

import gc

import torch
from celery import Task, shared_task
from celery.signals import worker_init, worker_process_init, worker_shutdown
from django.conf import settings

from imagery.ingest import ingest_image as run_ingest
from imagery.purge import purge_pending_blobs
from picterra.jobs import RUNNING_ELSEWHERE, Job, RetryLater
from workers import pipelines, sweeper
from workers.freed_memory import keep_freed_memory
from workers.ml.inference_server import ServerSupervisor

#: The inference server this worker started (``DETECT_INFERENCE=server``), by name; none otherwise.
_inference_servers: dict[str, ServerSupervisor] = {}


@worker_process_init.connect
def share_cpu_cores(**_) -> None:
    """Each pool process gets its share of the cores for PyTorch (prediction; training sets its own)."""
    torch.set_num_threads(settings.WORKER_TORCH_THREADS)


@worker_process_init.connect
def reuse_freed_memory(**_) -> None:
    """Each pool process keeps ``WORKER_KEEP_FREED_MB`` of the memory it frees, so a cell's large arrays reuse
    the previous cell's pages instead of faulting in fresh ones (``workers.freed_memory``)."""
    keep_freed_memory(settings.WORKER_KEEP_FREED_MB * 2**20)


@worker_process_init.connect
def freeze_startup_objects(**_) -> None:
    """What exists when a pool process starts (modules, Django, Celery, PyTorch: ~276,000 objects) lives as long
    as the process; frozen, the cyclic garbage collector's full passes stop walking it. A detection cell creates
    tens of thousands of objects (rows, polygons, strings), which set off full passes again and again, and each
    walked everything: 6-8 s of the 63-66 worker CPU seconds of the ceiling bench's 100 cells, 1 s frozen
    (docs/experiments.md, "objects frozen"). Objects made later are collected as before."""
    gc.freeze()


@worker_init.connect
def start_inference_server(**_) -> None:
    """With ``DETECT_INFERENCE=server``, a worker that takes the ``gpu`` queue starts, before its pool, the
    process that owns the device and batches its pool's tiles (``workers.ml.inference_server``), and
    starts it again if it dies; a cell that was waiting on it fails its attempt and is retried."""
    if settings.DETECT_INFERENCE != "server" or "gpu" not in settings.CELERY_WORKER_QUEUES:
        return
    supervisor = ServerSupervisor(
        settings.INFERENCE_SERVER_SOCKET,
        "auto",
        max_batch=settings.INFERENCE_SERVER_BATCH_TILES or None,
        max_wait_s=settings.INFERENCE_SERVER_WAIT_MS / 1000,
        tile=settings.INFERENCE_SERVER_TILE or None,
        threads=settings.WORKER_TORCH_THREADS,
    )
    supervisor.start()
    _inference_servers["gpu"] = supervisor


@worker_shutdown.connect
def stop_inference_server(**_) -> None:
    for supervisor in _inference_servers.values():
        supervisor.stop()
    _inference_servers.clear()


class RowJob(Task):
    """A job keyed by one row (run by ``picterra.jobs.run_row_job``). Acknowledged late, so a worker that
    dies mid-job leaves its message to be delivered again; retried without limit (the row's claim bounds the
    attempts). A job that finds its row moved by another worker (``RUNNING_ELSEWHERE``: that heartbeat is
    fresh, but its worker may have just died) comes back once that heartbeat would have gone stale; one whose
    row's policy retries an error (``RetryLater``) comes back after the row's wait."""

    acks_late = True
    max_retries = None

    def __call__(self, *args, **kwargs):
        try:
            result = super().__call__(*args, **kwargs)
        except RetryLater as later:
            raise self.retry(exc=later.__cause__ or later, countdown=later.countdown) from later
        if result == RUNNING_ELSEWHERE:
            raise self.retry(countdown=settings.JOB_HEARTBEAT_STALE_S)
        return result


@shared_task(name=Job.INGEST_IMAGE.value, base=RowJob)
def ingest_image(image_id: str) -> str:
    return run_ingest(image_id)


@shared_task(name=Job.TRAIN_DETECTOR.value, base=RowJob)
def train_detector(run_id: str) -> str:
    return pipelines.run_training(run_id)


@shared_task(name=Job.DETECT_CELL.value, base=RowJob)
def detect_cell(cell_id: str) -> str:
    return pipelines.run_detection_cell(cell_id)


@shared_task(name=Job.FINISH_DETECTION.value, base=RowJob)
def finish_detection(run_id: str) -> str:
    return pipelines.finish_detection(run_id)


@shared_task(name=Job.SWEEP_STALE_JOBS.value)
def sweep_stale_jobs() -> dict:
    return sweeper.sweep_stale_jobs()


@shared_task(name=Job.SWEEP_STORAGE.value)
def sweep_storage() -> dict:
    return sweeper.sweep_storage()


@shared_task(name=Job.PURGE_BLOBS.value, acks_late=True)
def purge_blobs() -> dict:
    """Delete the blobs of deleted rows (queued after each delete; the periodic storage sweep runs it too)."""
    return purge_pending_blobs()


@shared_task(name=Job.PING.value)
def ping(marker: str) -> str:
    """A round trip that proves a worker process is consuming the queue (for operators' health checks)."""
    return marker
