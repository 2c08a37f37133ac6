"""Jobs survive what happens to real deployments: workers killed mid-run, cells that fail then recover.

Every test here runs real Celery worker processes on the real Redis broker; a worker is killed with
SIGKILL (its whole process group, as when a machine loses power), and a new one is started. Tasks are
acknowledged late, so the broker hands the dead worker's task to the new one once the visibility
timeout (shortened for the test) has passed.
"""

from __future__ import annotations

import pytest
import rasterio
from django.urls import reverse
from rasterio.windows import Window

from detectors.models import DetectedObject, DetectionCell, DetectionRun, RunStatus, TrainingRun, training_run_prefix
from imagery.models import Image
from imagery.storage import get_blob_store
from tests.conftest import wait_for
from tests.workers.conftest import broker_messages, cell_window_key, finished
from workers.pipelines import load_trained_model

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

VISIBILITY_TIMEOUT_S = 10
# What a worker needs to take over the dead one's work promptly.
RECOVERY_ENV = {"CELERY_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S), "JOB_HEARTBEAT_STALE_S": "8"}


def assert_each_object_once(run: DetectionRun, training_run: TrainingRun, image_id: str) -> None:
    """Same objects as the model finds over the whole image in one window: none lost, none doubled."""
    from workers.ml.predict import predict_window

    image = Image.objects.get(pk=image_id)
    with rasterio.open(get_blob_store().gdal_path(image.cog_key)) as src:
        whole = predict_window(load_trained_model(training_run), src, Window(0, 0, src.width, src.height))
    objects = list(DetectedObject.objects.filter(detection_run=run))
    assert len(whole) >= 5, "the model found too few objects for this test to mean anything"
    assert run.objects_count == len(objects)
    assert abs(len(objects) - len(whole)) <= max(1, len(whole) // 20)
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            assert a.geometry.intersection(b.geometry).area < 0.5 * min(a.geometry.area, b.geometry.area), (
                "an object was reported twice"
            )


def test_training_finishes_after_its_worker_is_killed(celery_workers, faults, trainable):
    """Killed while it holds the run (parked at the training loop, so where it dies is not left to chance)."""
    client, detector, _ = trainable
    first = celery_workers.start(include=("tests.workers.faults",), **RECOVERY_ENV, **faults(hang={"train": True}))
    run_id = client.post(reverse("v1:detector-train", args=[detector["id"]])).json()["id"]
    wait_for(lambda: faults.reached("train") == 1, timeout=120)
    celery_workers.kill(first)
    run = TrainingRun.objects.get(pk=run_id)
    assert (run.status, run.attempts) == (RunStatus.RUNNING, 1)

    # The shortest training budget the settings accept: this checks the recovery, not the model.
    celery_workers.start(include=("tests.workers.faults",), TRAINING_TIME_BUDGET_S="5", **RECOVERY_ENV, **faults())
    # Bounded: the visibility timeout, one heartbeat-staleness wait, then a whole training run.
    run = wait_for(finished(TrainingRun, run_id), timeout=300, interval=1)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert (run.attempts, faults.reached("train")) == (2, 1)
    assert run.metrics["score"] is not None and run.progress["step"] > 0
    # The dead attempt wrote no weights (it died before training); exactly one attempt's files remain.
    attempts = {key.split("/")[2] for key in get_blob_store().list(training_run_prefix(run_id))}
    assert len(attempts) == 1
    assert run.weights_key.startswith(training_run_prefix(run_id) + attempts.pop())
    assert TrainingRun.objects.filter(detector_id=detector["id"]).count() == 1


def test_detection_finishes_after_its_worker_is_killed(celery_workers, trained_version, faults, settings):
    """Killed while predicting one chosen cell (parked there): that cell runs again, no other does."""
    client, detector, image_id, training_run = trained_version
    settings.DETECTION_CELL_SIZE = 128  # 16 cells over 512 px, objects straddling many borders
    response = client.post(reverse("v1:detector-detect", args=[detector["id"]]), {"images": [image_id]}, format="json")
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    assert response.json()["cells_total"] == 16
    image = Image.objects.get(pk=image_id)
    victim = DetectionCell.objects.filter(run_id=run_id).order_by("pk")[5]
    point = f"cell:{cell_window_key(victim, image.width, image.height)}"
    first = celery_workers.start(include=("tests.workers.faults",), **RECOVERY_ENV, **faults(hang={point: True}))
    wait_for(lambda: faults.reached(point) == 1, timeout=120)
    celery_workers.kill(first)
    victim.refresh_from_db()
    assert (victim.status, victim.attempts) == ("running", 1)

    celery_workers.start(include=("tests.workers.faults",), **RECOVERY_ENV, **faults())
    run = wait_for(finished(DetectionRun, run_id), timeout=180, interval=1)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.cells_done == 16 and run.cells_failed == 0
    # The cell the dead worker held ran twice (its objects replaced, not added to); every other cell once.
    attempts = dict(DetectionCell.objects.filter(run=run).values_list("pk", "attempts"))
    assert attempts == {pk: 2 if pk == victim.pk else 1 for pk in attempts}
    assert DetectionCell.objects.filter(run=run, status="done").count() == 16
    assert_each_object_once(run, training_run, image_id)
    links = client.get(reverse("v1:detectionrun-downloads", args=[run_id])).json()
    assert set(links) == {"geojson", "gpkg", "csv"}


def test_flaky_cells_are_retried_and_a_broken_cell_can_be_retried_later(
    celery_workers, trained_version, faults, settings
):
    client, detector, image_id, training_run = trained_version
    settings.DETECTION_CELL_SIZE = 256  # 2 x 2 cells
    image = Image.objects.get(pk=image_id)
    # Planned before any worker runs: the cells wait in the queue while the faults are set up.
    response = client.post(reverse("v1:detector-detect", args=[detector["id"]]), {"images": [image_id]}, format="json")
    run_id = response.json()["id"]
    cells = list(DetectionCell.objects.filter(run_id=run_id).order_by("key"))
    assert len(cells) == 4
    flaky, broken = cells[1], cells[2]
    env = faults(
        fail={
            cell_window_key(flaky, image.width, image.height): 2,  # fails twice, then works
            cell_window_key(broken, image.width, image.height): -1,  # fails every time
        },
    )
    celery_workers.start(include=("tests.workers.faults",), **env)

    run = wait_for(finished(DetectionRun, run_id), timeout=180, interval=1)
    assert run.status == RunStatus.PARTIAL, run.error
    assert run.cells_done == 3 and run.cells_failed == 1
    flaky.refresh_from_db()
    broken.refresh_from_db()
    assert flaky.status == "done" and flaky.attempts == 3
    assert broken.status == "failed" and "injected fault" in broken.error
    assert "1 of 4 grid cells failed" in run.error
    shown = client.get(reverse("v1:detectionrun-detail", args=[run_id])).json()
    assert shown["status"] == "partial" and [c["cell"] for c in shown["failed_cells"]] == [broken.key]

    faults()  # the fault is gone (a disk came back, a bug was fixed)
    response = client.post(reverse("v1:detectionrun-retry-failed-cells", args=[run_id]))
    assert response.status_code in (200, 202), response.json()
    run = wait_for(finished(DetectionRun, run_id), timeout=120, interval=1)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.cells_done == 4 and run.cells_failed == 0
    assert_each_object_once(run, training_run, image_id)


def test_cancel_stops_a_detection_promptly(celery_workers, trained_version, faults, settings):
    """Cancelled while one cell is in hand (parked there): that cell may end, no queued cell ever starts."""
    client, detector, image_id, _ = trained_version
    settings.DETECTION_CELL_SIZE = 128  # 16 cells
    celery_workers.start(include=("tests.workers.faults",), **faults(hang={"cell": True}))
    run_id = client.post(
        reverse("v1:detector-detect", args=[detector["id"]]), {"images": [image_id]}, format="json"
    ).json()["id"]
    wait_for(lambda: faults.reached("cell") == 1, timeout=120)
    response = client.post(reverse("v1:detectionrun-cancel", args=[run_id]))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    cells = DetectionCell.objects.filter(run_id=run_id)
    assert cells.filter(status="cancelled").count() == 15 and cells.filter(status="running").count() == 1

    faults()  # counts from zero; the cell in hand goes on, each queued cell's job finds its row cancelled
    wait_for(lambda: not cells.filter(status="running").exists(), timeout=60)
    wait_for(lambda: broker_messages() == 0, timeout=60)
    assert cells.filter(status="done").count() == 1
    assert cells.filter(status="cancelled").count() == 15
    assert not cells.filter(status="cancelled", attempts__gt=0).exists()
    assert faults.reached("cell") == 0, "a queued cell started predicting after the cancel"
    assert DetectionRun.objects.get(pk=run_id).status == RunStatus.CANCELLED
    assert client.post(reverse("v1:detectionrun-cancel", args=[run_id])).status_code == 400
