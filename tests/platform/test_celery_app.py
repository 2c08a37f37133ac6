"""Tasks queued from any Django process reach the configured broker and the right queue."""

from __future__ import annotations

import os
import subprocess
import sys

from celery import current_app

from picterra.celery import app
from tests.conftest import REPO


def test_django_processes_queue_on_the_configured_broker(settings):
    # Without the app imported by the project package, shared tasks would fall back to Celery's
    # default broker (amqp://localhost) and silently go nowhere.
    code = "import django; django.setup(); from celery import current_app; print(current_app.conf.broker_url)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "picterra.settings"},
    )
    assert result.stdout.strip() == settings.CELERY_BROKER_URL
    assert current_app.main == "picterra"


def test_training_and_detection_go_to_the_gpu_queue_everything_else_to_default():
    def queue_of(task_name: str) -> str:
        return app.amqp.router.route({}, task_name)["queue"].name

    assert queue_of("workers.tasks.train_detector") == "gpu"
    assert queue_of("workers.tasks.detect_cell") == "gpu"
    assert queue_of("workers.tasks.ingest_image") == "default"
    queues = {q.name: q.routing_key for q in app.conf.task_queues}
    assert queues == {"default": "default", "gpu": "gpu"}
