"""The Celery application: two queues, `default` (ingest, merge, exports) and `gpu` (train, detect cells)."""

from __future__ import annotations

import os

from celery import Celery
from kombu import Exchange, Queue

from picterra.jobs import Job

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "picterra.settings")

app = Celery("picterra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name) for name in ("default", "gpu")
)
app.conf.task_routes = {"workers.tasks.train_*": {"queue": "gpu"}, "workers.tasks.detect_*": {"queue": "gpu"}}
app.conf.beat_schedule = {
    "sweep-stale-jobs": {"task": Job.SWEEP_STALE_JOBS.value, "schedule": 300.0},
    "sweep-storage": {"task": Job.SWEEP_STORAGE.value, "schedule": 300.0},
}
app.autodiscover_tasks(["workers"])
