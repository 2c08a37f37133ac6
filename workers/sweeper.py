"""No job stays unfinished forever, and storage follows the data: the periodic sweeps, composed.

Each app owns the sweep of its own rows (imagery/sweep.py: uploads and ingests; detectors/sweep.py:
training and detection runs; imagery/purge.py: blobs of deleted rows; picterra/public_api/cleanup.py:
the public API's expired temporaries). The beat schedule (picterra/celery.py) runs these two every few
minutes through workers/tasks.py.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from detectors.sweep import sweep_stale_runs
from imagery.purge import purge_pending_blobs
from imagery.sweep import sweep_stale_images
from picterra.public_api.cleanup import expire_public_api_temporaries

logger = logging.getLogger(__name__)


def sweep_stale_jobs(now: datetime | None = None) -> dict[str, int]:
    """Rows that stopped moving for STALE_JOB_TIMEOUT_S are queued again, or failed with a reason."""
    now = now or timezone.now()
    stale_before = now - timedelta(seconds=settings.STALE_JOB_TIMEOUT_S)
    result = {**sweep_stale_images(now, stale_before), **sweep_stale_runs(now, stale_before)}
    if any(result.values()):
        logger.warning("sweeper: %s", result)
    return result


def sweep_storage(now: datetime | None = None) -> dict[str, int]:
    """Purges whose message was lost or whose store call failed, and the public API's upload tickets and
    downloads past their expiry."""
    result = {**purge_pending_blobs(), **expire_public_api_temporaries(now or timezone.now())}
    if any(result.values()):
        logger.info("storage sweep: %s", result)
    return result
