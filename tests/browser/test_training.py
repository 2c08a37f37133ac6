"""Train from the workspace with a real worker: progress, the score, predictions and the review of the
accuracy areas on the map, the version Detect uses; and plain words when there is nothing to train on."""

from __future__ import annotations

import pytest

from detectors.models import DetectionRun, Detector, DetectorClass, DetectorImage, RunStatus, TrainingRun
from tests.detectors.test_training_flow import trainable  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.slow
def test_train_see_progress_score_predictions_and_errors_then_choose_the_version(
    page,
    app_server,
    sign_in,
    personas,
    celery_worker_process,
    trainable,  # noqa: F811
    screenshot,
):
    _, detector, _ = trainable
    sign_in(personas.owner)
    page.goto(f"{app_server.url}/app/detectors/{detector['id']}")
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    page.locator("[data-testid=train-status]", has_text="Draw a training area").wait_for()

    page.click("[data-testid=train-button]")
    assert page.locator("[data-testid=train-button]").is_disabled()
    progress = page.locator("[data-testid=train-status][data-status=running] [role=progressbar]")
    progress.wait_for(timeout=120_000)
    page.locator("[data-testid=train-steps]", has_text="Step").wait_for(timeout=60_000)
    screenshot("05-training")

    status = page.locator("[data-testid=train-status][data-status=succeeded]")
    status.wait_for(timeout=240_000)
    run = TrainingRun.objects.get(detector_id=detector["id"])
    assert run.status == RunStatus.SUCCEEDED
    score = page.locator("[data-testid=score]")
    assert float(score.get_attribute("data-score")) == pytest.approx(run.metrics["score"], abs=0.01)
    assert "F-score" in score.inner_text() and "Precision" in score.inner_text()
    overall = run.metrics["overall"]
    assert f"Found {overall['matches']} of {overall['n_true']}" in score.inner_text()
    assert int(page.locator("[data-testid=loss-chart]").get_attribute("data-points")) > 1

    # Predictions in the testing area and the review of the accuracy area are on the map.
    the_map = page.locator("[data-testid=map]")
    page.wait_for_function("() => +document.querySelector('[data-testid=map]').dataset.review > 0")
    assert int(the_map.get_attribute("data-review")) == len(run.review["features"])
    assert int(the_map.get_attribute("data-predictions")) == run.predicted_objects.count()
    assert page.locator("[data-testid=layer-review]").is_checked()
    page.wait_for_timeout(500)
    screenshot("06-trained-score")

    row = page.locator("[data-testid=version-row][data-version='1']")
    assert row.get_attribute("data-status") == "succeeded"
    assert row.locator("[data-testid=use-version]").is_checked()  # the newest successful version by default
    assert not page.locator("[data-testid=train-button]").is_disabled()

    # A newer version (as a second training would leave): Detect follows it, until v1 is chosen.
    TrainingRun.objects.create(
        detector_id=detector["id"], version=2, status=RunStatus.SUCCEEDED, metrics={"score": 41.0}, progress={}
    )
    page.reload()
    page.locator("[data-testid=version-row]").nth(1).wait_for()
    assert page.locator("[data-testid=version-row][data-version='2'] [data-testid=use-version]").is_checked()
    page.locator("[data-testid=version-row][data-version='1'] [data-testid=use-version]").check()
    page.locator(".toast", has_text="Detect now uses version 1").wait_for()
    assert str(Detector.objects.get(pk=detector["id"]).active_training_run_id) == str(run.pk)

    # Detect with the chosen version: progress, counts, the objects as vector tiles, the GeoJSON download.
    page.click("[data-testid=detect-button]")
    page.locator("[data-testid=detect-status][data-status=succeeded]").wait_for(timeout=180_000)
    detection = DetectionRun.objects.get(detector_id=detector["id"])
    assert str(detection.training_run_id) == str(run.pk) and detection.objects_count > 0
    assert f"{detection.cells_total} of {detection.cells_total} parts done" in page.locator(
        "[data-testid=detect-progress]"
    ).inner_text()
    page.locator("[data-testid=detect-counts]").wait_for()
    counted = sum(int(c.replace(",", "")) for c in page.locator("[data-testid=count-value]").all_inner_texts())
    assert counted == detection.objects_count
    page.wait_for_function("() => +document.querySelector('[data-testid=map]').dataset.detectionTiles > 0")
    assert the_map.get_attribute("data-detection") == str(detection.pk)
    href = page.locator("[data-testid=downloads] a[data-format=geojson]").get_attribute("href")
    collection = page.request.get(href if href.startswith("http") else app_server.url + href).json()
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == detection.objects_count
    page.wait_for_timeout(500)
    screenshot("07-detected")


def test_train_with_nothing_drawn_says_what_to_do(page, app_server, sign_in, personas, project, ready_sample_image):
    detector = Detector.objects.create(organization=personas.organization, project=project, name="Empty")
    DetectorClass.objects.create(detector=detector, name="tree", position=0)
    DetectorImage.objects.create(detector=detector, image=ready_sample_image)
    sign_in(personas.owner)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    page.click("[data-testid=train-button]")
    page.locator("[data-testid=train-problems]", has_text="Draw at least one training area").wait_for()
    assert not TrainingRun.objects.exists()
