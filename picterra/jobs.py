"""Queue a Celery task once the current transaction commits, without ever failing the request.

The database row is the truth: if the broker is unreachable the row simply stays queued and the
periodic sweeper asks again later, so an outage of Redis never turns an upload into a server error.
"""

from __future__ import annotations

import logging

from django.db import transaction

logger = logging.getLogger(__name__)

RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 2}


def enqueue_on_commit(task, *args: str) -> None:
    def send() -> None:
        try:
            task.apply_async(args=args, retry=True, retry_policy=RETRY_POLICY)
        except Exception:
            logger.exception("could not queue %s%s; the sweeper will queue it again", task.name, args)

    transaction.on_commit(send)
