"""The job layer: queue work by name once the current transaction commits, without ever failing the
request; keep a job's heartbeat moving while it works.

Apps queue a job by its name (``Job``) through ``enqueue``, Celery's ``send_task``: they never import the
worker modules that run it (``workers/tasks.py`` registers the names), so the import graph stays one-way
(``workers`` -> ``detectors`` -> ``imagery`` -> ``picterra``; tests/platform/test_layers.py).

The database row is the truth: if the broker is unreachable the row simply stays queued and the
periodic sweeper (`workers/sweeper.py`) queues it again once it has waited STALE_JOB_TIMEOUT_S, so an
outage of Redis never turns an upload into a server error nor leaves a job waiting forever.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from enum import StrEnum

from celery import current_app
from django.conf import settings
from django.db import connections, transaction

logger = logging.getLogger(__name__)

#: A job's answer when another worker's heartbeat on its row is still fresh: its task comes back later.
RUNNING_ELSEWHERE = "running-elsewhere"
RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


class Job(StrEnum):
    """Every job the platform queues, by the name its Celery task is registered under (workers/tasks.py).

    The names are the queue's contract with workers already running: renaming one strands its messages.
    The `gpu` queue takes the names starting ``workers.tasks.train_`` or ``workers.tasks.detect_``
    (picterra/celery.py).
    """

    INGEST_IMAGE = "workers.tasks.ingest_image"
    TRAIN_DETECTOR = "workers.tasks.train_detector"
    DETECT_CELL = "workers.tasks.detect_cell"
    FINISH_DETECTION = "workers.tasks.finish_detection"
    PURGE_BLOBS = "workers.tasks.purge_blobs"
    SWEEP_STALE_JOBS = "workers.tasks.sweep_stale_jobs"
    SWEEP_STORAGE = "workers.tasks.sweep_storage"
    PING = "workers.tasks.ping"


def enqueue(job: Job, *ids: str) -> None:
    """Queue ``job`` for the row ids once the surrounding transaction commits (at once outside one).

    A broker that cannot be reached is logged, never raised: the row stays queued and its app's sweep
    queues it again (``STALE_JOB_TIMEOUT_S``).
    """
    args = tuple(str(i) for i in ids)

    def send() -> None:
        try:
            current_app.send_task(str(job), args=args, retry=True, retry_policy=RETRY_POLICY)
        except Exception:
            logger.exception("could not queue %s%s; the sweeper will queue it again", job, args)

    transaction.on_commit(send)


@contextlib.contextmanager
def heartbeat(beat: Callable[[], object], every_s: float | None = None) -> Iterator[None]:
    """Call ``beat`` (e.g. an UPDATE of the row's heartbeat column) every ``every_s`` seconds in a
    background thread while the block runs.

    Long phases that report no progress (converting a large upload, predicting a cell, writing exports)
    would otherwise look like a dead worker to the sweeper and to a redelivered duplicate. The thread uses
    its own database connection, closed when the block ends; a beat that fails (a locked SQLite file) is
    logged and tried again at the next tick, never raised into the job. Never open it inside a transaction
    that locks the row it beats: the beat would wait for the lock and the block's end for the beat.
    """
    interval = every_s if every_s is not None else settings.JOB_HEARTBEAT_EVERY_S
    stop = threading.Event()

    def loop() -> None:
        try:
            while not stop.wait(interval):
                try:
                    beat()
                except Exception:
                    logger.warning("heartbeat failed; trying again in %s s", interval, exc_info=True)
        finally:
            connections.close_all()

    thread = threading.Thread(target=loop, name="job-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
