"""Every job reaches a terminal state, whatever stops on the way: the broker, the worker, or both.

Nothing here races a kill against progress. A worker dies at a named point of a job (tests/workers/faults.py:
`exit` ends the pool process there with os._exit, as the OOM killer would; `hang` parks it there for the
test to SIGKILL); messages are lost by queueing while a private Redis is down, or by restarting it without
persistence. Then the sweeper (called directly, with the clock moved past STALE_JOB_TIMEOUT_S) and a live
worker must bring every row to its end, and attempts must stay bounded.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

import imagery.ingest as ingest_module
from detectors.models import DetectionCell, DetectionRun, Detector, RunStatus, TrainingRun
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store, image_cog_prefix
from picterra.jobs import RUNNING_ELSEWHERE
from tests.conftest import wait_for
from tests.workers.conftest import cell_window_key, finished
from workers.pipelines import finish_detection, run_detection_cell, run_training
from workers.sweeper import sweep_stale_jobs

pytestmark = pytest.mark.django_db(transaction=True)

# Redelivered duplicates wait this long for a heartbeat to go stale before taking a job over.
QUICK = {"JOB_HEARTBEAT_STALE_S": "5", "CELERY_VISIBILITY_TIMEOUT_S": "10"}


def later(settings):
    return timezone.now() + timedelta(seconds=settings.STALE_JOB_TIMEOUT_S + 1)


def upload(client, project, tmp_path, name: str = "ortho.tif") -> str:
    sample = write_sample_geotiff(tmp_path / name, size=300, trees=4)
    with sample.path.open("rb") as fh:
        response = client.post(reverse("v1:image-list"), {"project": str(project.pk), "file": fh}, format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()["id"]


def image_ended(image_id):
    return lambda: Image.objects.filter(pk=image_id, status__in=Image.TERMINAL_STATUSES).first()


# --- In one process: claims, heartbeats, duplicates --------------------------------------------------


def test_a_long_conversion_keeps_its_upload_alive(personas, project, client_for, tmp_path, settings, monkeypatch):
    """The claim moves updated_at and a heartbeat keeps moving it: the sweeper never takes it for dead."""
    settings.JOB_HEARTBEAT_EVERY_S = 0.2
    image_id = upload(client_for(personas.owner), project, tmp_path)
    # It waited in the queue for longer than the sweeper's patience before a worker took it.
    long_ago = timezone.now() - timedelta(seconds=settings.STALE_JOB_TIMEOUT_S + 60)
    Image.objects.filter(pk=image_id).update(updated_at=long_ago)
    seen = {}
    real_convert = ingest_module.convert_to_cog

    def slow_convert(*args, **kwargs):
        claimed_at = Image.objects.get(pk=image_id).updated_at
        seen["claimed_at"] = claimed_at
        seen["sweep"] = sweep_stale_jobs()  # while converting: nothing to re-queue, nothing to fail
        wait_for(lambda: Image.objects.get(pk=image_id).updated_at > claimed_at, timeout=10)
        return real_convert(*args, **kwargs)

    monkeypatch.setattr(ingest_module, "convert_to_cog", slow_convert)
    assert ingest_image(image_id) == Image.Status.READY
    assert seen["claimed_at"] > long_ago
    assert not any(seen["sweep"].values()), seen["sweep"]
    image = Image.objects.get(pk=image_id)
    assert (image.status, image.ingest_attempts) == (Image.Status.READY, 1)
    assert [t.name for t in threading.enumerate() if t.name == "job-heartbeat"] == []


def test_claims_count_attempts_and_refuse_past_the_limit(personas, project, ready_image, settings):
    settings.INGEST_MAX_ATTEMPTS = 2
    image = Image.objects.create(
        project=project, name="bomb.tif", status=Image.Status.INGESTING, ingest_attempts=2, original_key="x"
    )
    get_blob_store().put_stream(image_cog_prefix(image.pk) + "half.tif", io.BytesIO(b"left by a killed attempt"))
    assert ingest_image(str(image.pk)) == Image.Status.FAILED
    image.refresh_from_db()
    assert image.error == "Processing this file stopped the worker 2 times; it may be too large or damaged."
    assert list(get_blob_store().list(image_cog_prefix(image.pk))) == []

    detector = Detector.objects.create(organization=personas.organization, name="d")
    stale = timezone.now() - timedelta(seconds=settings.JOB_HEARTBEAT_STALE_S + 1)
    run = TrainingRun.objects.create(
        detector=detector,
        version=1,
        status=RunStatus.RUNNING,
        heartbeat_at=stale,
        attempts=settings.TRAINING_MAX_ATTEMPTS,
    )
    assert run_training(str(run.pk)) == RunStatus.FAILED
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and "stopped its worker 3 times" in run.error

    version = TrainingRun.objects.create(detector=detector, version=2, status=RunStatus.SUCCEEDED)
    detection = DetectionRun.objects.create(detector=detector, training_run=version, status=RunStatus.RUNNING)
    cell = DetectionCell.objects.create(
        run=detection, image=ready_image, key="r0c0", window=[0, 0, 1, 1], margin=0, status="running", attempts=3
    )
    assert run_detection_cell(str(cell.pk)) == "failed"
    cell.refresh_from_db()
    assert cell.status == "failed" and "stopped the worker 3 times" in cell.error
    assert cell.attempts == 3


def test_a_duplicate_of_a_job_a_worker_is_moving_does_nothing(personas, ready_image, settings):
    detector = Detector.objects.create(organization=personas.organization, name="d")
    now = timezone.now()
    busy = TrainingRun.objects.create(detector=detector, version=1, status="running", heartbeat_at=now, attempts=1)
    assert run_training(str(busy.pk)) == RUNNING_ELSEWHERE
    busy.refresh_from_db()
    assert (busy.status, busy.attempts, busy.heartbeat_at) == (RunStatus.RUNNING, 1, now)

    version = TrainingRun.objects.create(detector=detector, version=2, status=RunStatus.SUCCEEDED)
    finishing = DetectionRun.objects.create(
        detector=detector, training_run=version, status="running", heartbeat_at=now, finish_attempts=1
    )
    DetectionCell.objects.create(run=finishing, image=ready_image, key="r0c0", window=[0, 0, 1, 1], margin=0)
    DetectionCell.objects.filter(run=finishing).update(status="done")
    assert finish_detection(str(finishing.pk)) == RUNNING_ELSEWHERE
    finishing.refresh_from_db()
    assert (finishing.status, finishing.finish_attempts) == (RunStatus.RUNNING, 1)

    # A run whose heartbeat is old but one of whose cells a worker is predicting (it beats): left alone.
    slow = DetectionRun.objects.create(
        detector=detector, training_run=version, status="running", heartbeat_at=now - timedelta(days=1)
    )
    DetectionCell.objects.create(run=slow, image=ready_image, key="r0c0", window=[0, 0, 1, 1], margin=0)
    DetectionCell.objects.create(run=slow, image=ready_image, key="r0c1", window=[0, 0, 1, 1], margin=0)
    DetectionCell.objects.filter(run=slow, key="r0c0").update(status="running", updated_at=later(settings))
    DetectionRun.objects.update(queued_at=now - timedelta(days=1))
    TrainingRun.objects.update(queued_at=now - timedelta(days=1))
    assert sweep_stale_jobs(now=later(settings)) == {
        "images_requeued": 0,
        "images_failed": 0,
        "uploads_abandoned": 0,
        "training_runs_requeued": 1,  # `busy`, as far as that clock knows; its claim is what keeps it single
        "runs_failed": 0,
        "detection_cells_requeued": 0,
        "detections_finished": 1,  # `finishing`, likewise
    }


# --- Real workers that die at a named point --------------------------------------------------------


def test_an_upload_that_kills_its_worker_every_time_ends_failed(
    celery_workers, faults, personas, project, client_for, tmp_path, settings
):
    celery_workers.start(include=("tests.workers.faults",), **faults(exit={"ingest": -1}))
    image_id = upload(client_for(personas.owner), project, tmp_path)
    image = wait_for(image_ended(image_id), timeout=120, interval=0.5)
    assert image.status == Image.Status.FAILED
    assert image.error == "Processing this file stopped the worker 3 times; it may be too large or damaged."
    assert image.ingest_attempts == settings.INGEST_MAX_ATTEMPTS == 3
    assert faults.reached("ingest") == 3
    assert list(get_blob_store().list(image_cog_prefix(image_id))) == []


def test_training_that_kills_its_worker_every_time_ends_failed(celery_workers, faults, trainable):
    client, detector, _ = trainable
    celery_workers.start(include=("tests.workers.faults",), **QUICK, **faults(exit={"train": -1}))
    run_id = client.post(reverse("v1:detector-train", args=[detector["id"]])).json()["id"]
    run = wait_for(finished(TrainingRun, run_id), timeout=180, interval=0.5)
    assert run.status == RunStatus.FAILED
    assert run.error.startswith("Training stopped its worker 3 times")
    assert run.attempts == 3 and faults.reached("train") == 3


def test_a_detection_survives_a_cell_and_a_final_step_that_kill_their_worker(
    celery_workers, faults, trained_version, settings
):
    """One cell kills its worker every time, the final step once: the run still ends, `partial`."""
    client, detector, image_id, _ = trained_version
    settings.DETECTION_CELL_SIZE = 256  # 2 x 2 cells
    response = client.post(reverse("v1:detector-detect", args=[detector["id"]]), {"images": [image_id]}, format="json")
    run_id = response.json()["id"]
    cells = list(DetectionCell.objects.filter(run_id=run_id).order_by("key"))
    assert len(cells) == 4
    image = Image.objects.get(pk=image_id)
    deadly = f"cell:{cell_window_key(cells[2], image.width, image.height)}"
    celery_workers.start(include=("tests.workers.faults",), **QUICK, **faults(exit={deadly: -1, "finish": 1}))

    run = wait_for(finished(DetectionRun, run_id), timeout=180, interval=0.5)
    assert run.status == RunStatus.PARTIAL, run.error
    assert "1 of 4 grid cells failed" in run.error
    by_key = {c.key: c for c in DetectionCell.objects.filter(run_id=run_id)}
    killer = by_key[cells[2].key]
    assert (killer.status, killer.attempts) == ("failed", settings.DETECTION_CELL_ATTEMPTS)
    assert "stopped the worker 3 times" in killer.error
    assert faults.reached(deadly) == 3
    assert all((c.status, c.attempts) == ("done", 1) for k, c in by_key.items() if k != killer.key)
    assert run.finish_attempts == 2 and faults.reached("finish") == 2
    assert set(run.result_keys) == {"geojson", "gpkg", "csv"}


# --- A broker that goes away ---------------------------------------------------------------------


def test_jobs_whose_messages_the_broker_lost_still_end(
    celery_workers, faults, trained_version, private_broker, personas, project, tmp_path, settings
):
    """Queued while Redis was down, and in hand when it restarted empty: the sweeper asks again."""
    client, detector, image_id, _ = trained_version
    settings.DETECTION_CELL_SIZE = 256  # 2 x 2 cells

    # 1. Redis is down while an upload, a training and a detection are queued: each message is lost.
    private_broker.stop()
    new_image = upload(client, project, tmp_path, "while-down.tif")
    training = client.post(reverse("v1:detector-train", args=[detector["id"]]))
    assert training.status_code == 201, training.json()
    detection = client.post(reverse("v1:detector-detect", args=[detector["id"]]), {"images": [image_id]}, format="json")
    assert detection.status_code == 201, detection.json()
    private_broker.start()  # empty: nothing will ever come of those
    assert private_broker.messages() == 0
    celery_workers.start(include=("tests.workers.faults",), TRAINING_TIME_BUDGET_S="5", **QUICK, **faults())
    result = sweep_stale_jobs(now=later(settings))
    assert (result["images_requeued"], result["training_runs_requeued"], result["detection_cells_requeued"]) == (
        1,
        1,
        4,
    )
    assert wait_for(image_ended(new_image), timeout=120, interval=0.5).status == Image.Status.READY
    run = wait_for(finished(DetectionRun, detection.json()["id"]), timeout=120, interval=0.5)
    assert run.status == RunStatus.SUCCEEDED, run.error
    run = wait_for(finished(TrainingRun, training.json()["id"]), timeout=180, interval=0.5)
    assert (run.status, run.attempts) == (RunStatus.SUCCEEDED, 1), run.error

    # 2. Redis restarts empty while a worker holds a cell (its unacknowledged message goes too), and that
    #    worker dies: the cell in hand and the cells still queued are all asked for again.
    worker = celery_workers.started[-1]
    faults(hang={"cell": True})
    detection = client.post(reverse("v1:detector-detect", args=[detector["id"]]), {"images": [image_id]}, format="json")
    run_id = detection.json()["id"]
    wait_for(lambda: faults.reached("cell") == 1, timeout=60)
    private_broker.stop()
    celery_workers.kill(worker)
    private_broker.start()
    faults()
    assert private_broker.messages() == 0
    celery_workers.start(include=("tests.workers.faults",), **QUICK, **faults())
    held = DetectionCell.objects.get(run_id=run_id, status="running")
    assert sweep_stale_jobs(now=later(settings))["detection_cells_requeued"] == 4
    run = wait_for(finished(DetectionRun, run_id), timeout=120, interval=0.5)
    assert run.status == RunStatus.SUCCEEDED, run.error
    cells = DetectionCell.objects.filter(run_id=run_id)
    assert {(c.pk == held.pk, c.status, c.attempts) for c in cells} == {(True, "done", 2), (False, "done", 1)}
