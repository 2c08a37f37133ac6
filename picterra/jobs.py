"""Queue a Celery task once the current transaction commits, without ever failing the request; keep a
job's heartbeat moving while it works.

The database row is the truth: if the broker is unreachable the row simply stays queued and the
periodic sweeper (`workers/sweeper.py`) queues it again once it has waited STALE_JOB_TIMEOUT_S, so an
outage of Redis never turns an upload into a server error nor leaves a job waiting forever.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator

from django.db import connections, transaction

logger = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


def enqueue_on_commit(task, *args: str) -> None:
    def send() -> None:
        try:
            task.apply_async(args=args, retry=True, retry_policy=RETRY_POLICY)
        except Exception:
            logger.exception("could not queue %s%s; the sweeper will queue it again", task.name, args)

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
    from django.conf import settings

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
