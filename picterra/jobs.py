"""The job layer: queue work by name once the current transaction commits, without ever failing the
request; run a job on its row (start, heartbeat, success, failure, retry) the same way for every job.

Apps queue a job by its name (``Job``) through ``enqueue``, Celery's ``send_task``: they never import the
worker modules that run it (``workers/tasks.py`` registers the names), so the import graph stays one-way
(``workers`` -> ``detectors`` -> ``imagery`` -> ``picterra``; tests/platform/test_layers.py).

The database row is the truth: if the broker is unreachable the row simply stays queued and the
periodic sweeper (`workers/sweeper.py`) queues it again once it has waited STALE_JOB_TIMEOUT_S, so an
outage of Redis never turns an upload into a server error nor leaves a job waiting forever.

Every job keyed by a row runs through ``run_row_job``: the row's ``RowState`` (owned by the app that owns
the row: ``imagery.ingest``, ``detectors.runs``) claims it, beats while the work runs, stores its success
and records its failure; the work itself only loads, calls and returns what to store. The Celery base task
(``workers.tasks.RowJob``) turns ``RUNNING_ELSEWHERE`` and ``RetryLater`` into Celery retries.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from enum import StrEnum
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import connections, transaction

logger = logging.getLogger(__name__)

#: A claim's answer when the row is now this job's to work on.
RUNNING = "running"
#: A job's answer when another worker's heartbeat on its row is still fresh: its task comes back later.
RUNNING_ELSEWHERE = "running-elsewhere"
#: The answer of a job whose row failed.
FAILED = "failed"
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


class JobFailed(Exception):
    """The work cannot succeed, and retrying will not change that: the row fails with this message, written
    for the user in plain words (a file that is not an image, a detector without training areas)."""


class RowMoved(Exception):
    """The row left this job while it worked (cancelled, deleted, ended by another worker): nothing more is
    written to it, and the job answers the row's ``status``."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class RetryLater(Exception):
    """The work failed in a way worth another attempt: the row was put back, the job comes again after
    ``countdown`` seconds (``workers.tasks.RowJob`` turns it into a Celery retry)."""

    def __init__(self, countdown: int) -> None:
        super().__init__(f"retry in {countdown} s")
        self.countdown = countdown


class RowState(ABC):
    """How one kind of row records a job's life: start (the claim), heartbeat, success and failure.

    Implemented by the app that owns the row, beside its model. Every write is conditional on the row
    still being the job's, so a duplicate delivery, a cancel or the sweeper never see a row written twice.
    """

    @abstractmethod
    def claim(self, row_id: str) -> str:
        """Count the attempt and take the row before any work: ``RUNNING`` when taken, ``RUNNING_ELSEWHERE``
        when another worker's heartbeat is fresh, else the row's state (done, cancelled, deleted, or
        ``FAILED`` once its attempts are spent)."""

    @abstractmethod
    def beat(self, row_id: str) -> None:
        """Move the row's heartbeat, which the sweeper and redelivered duplicates read."""

    @abstractmethod
    def succeed(self, row_id: str, result: Any) -> str:
        """Store what the work returned and end the row; returns its state (the row's own, if it moved)."""

    @abstractmethod
    def fail(self, row_id: str, message: str) -> None:
        """End the row as failed with ``message`` (plain words for the user), unless it already ended."""

    def unexpected_failure(self, error: Exception) -> str:
        """The message for an error nobody planned for (its details go to the worker's log, not the user)."""
        return "This job failed unexpectedly. Please try again."

    def retry_after(self, row_id: str, error: Exception) -> int | None:
        """Seconds before another attempt after ``error`` (the row put back to wait for it), or None: fail."""
        return None


def run_row_job(state: RowState, row_id: str, work: Callable[[str], Any]) -> str:
    """Run ``work`` on a row: claim it, keep its heartbeat moving, store the result or record the failure.

    ``work(row_id)`` loads, calls and returns what ``state.succeed`` stores; it raises ``JobFailed`` for a
    failure in plain words, ``RowMoved`` when the row left it. Any other error is retried when the row's
    policy says so (``RetryLater``), else the row fails and the error is raised for the worker's log.
    """
    claimed = state.claim(row_id)
    if claimed != RUNNING:
        return claimed
    try:
        with heartbeat(lambda: state.beat(row_id)):
            result = work(row_id)
        # Storing is part of the job: a database error there is retried like one in the work.
        return state.succeed(row_id, result)
    except RowMoved as moved:
        return moved.status
    except JobFailed as failure:
        state.fail(row_id, str(failure))
        return FAILED
    except Exception as error:
        countdown = state.retry_after(row_id, error)
        if countdown is not None:
            raise RetryLater(countdown) from error
        state.fail(row_id, state.unexpected_failure(error))
        raise
