"""Train from the API with a real worker process: areas and outlines in, a scored version out."""

from __future__ import annotations

import pytest
from django.urls import reverse

from detectors.models import DetectedObject, RunStatus, TrainingRun
from tests.conftest import wait_for


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_train_from_the_api_with_a_worker(celery_workers, trainable, personas, client_for):
    client, detector, image_id = trainable
    celery_workers.start(TRAINING_TIME_BUDGET_S="5")  # the shortest the settings accept: the plumbing is tested
    response = client.post(reverse("v1:detector-train", args=[detector["id"]]))
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    assert response.json()["version"] == 1 and response.json()["status"] == "pending"

    def finished():
        run = TrainingRun.objects.get(pk=run_id)
        return run if run.status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED) else None

    run = wait_for(finished, timeout=240, interval=1)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.progress["step"] > 0 and len(run.progress["loss_history"]) > 0
    assert run.stats["training_areas_count"] == 1 and run.stats["validation_areas_count"] == 1
    assert run.stats["training_annotations_count"] > 10 and run.stats["validation_annotations_count"] > 3
    assert 0 <= run.metrics["score"] <= 100
    assert {"precision", "recall", "f1"} <= set(run.metrics["overall"])
    assert run.weights_key and run.model_card_key
    # what was trained, in plain words, as the Train panel shows it under the score
    shown = client.get(reverse("v1:trainingrun-detail", args=[run_id])).json()["progress"]
    assert shown["summary"].startswith(f"Trained {shown['step']} steps in ") and shown["step"] > 0
    assert f"(stopped: {shown['stop_reason']})" in shown["summary"] and shown["seconds"] > 0
    predictions = client.get(reverse("v1:trainingrun-predictions", args=[run_id])).json()
    assert predictions["type"] == "FeatureCollection"
    assert all(f["geometry"]["type"] == "Polygon" for f in predictions["features"])
    assert len(predictions["features"]) == DetectedObject.objects.filter(training_run_id=run_id).count()
    review = client.get(reverse("v1:trainingrun-review", args=[run_id])).json()["features"]
    kinds = [f["properties"]["kind"] for f in review]
    overall = run.metrics["overall"]
    assert kinds.count("match") == overall["matches"]
    assert kinds.count("match") + kinds.count("false_detection") == overall["n_pred"]
    assert kinds.count("match") + kinds.count("miss") == overall["n_true"]
    # the training areas' check: what it flags is on the map and counted on the run
    assert kinds.count("unoutlined") == run.metrics["unoutlined"]
    assert set(kinds) <= {"match", "false_detection", "miss", "unoutlined"}
    assert all(f["properties"]["image"] == image_id and f["properties"]["class"] == "tree" for f in review)
    assert client_for(personas.outsider).get(reverse("v1:trainingrun-review", args=[run_id])).status_code == 404
    # where to label next, computed after scoring: ranked squares on this image
    suggested = client.get(reverse("v1:trainingrun-suggestions", args=[run_id])).json()["features"]
    assert [f["properties"]["rank"] for f in suggested] == list(range(1, len(suggested) + 1))
    assert all(f["properties"]["image"] == image_id and f["properties"]["reason"] for f in suggested)


def test_train_refuses_with_plain_words_when_nothing_is_drawn(personas, project, ready_image, client_for):
    client = client_for(personas.owner)
    detector = client.post(
        reverse("v1:detector-list"), {"organization": str(personas.organization.pk), "name": "Empty"}, format="json"
    ).json()
    client.post(
        reverse("v1:detectorimage-list"), {"detector": detector["id"], "image": str(ready_image.pk)}, format="json"
    )
    response = client.post(reverse("v1:detector-train", args=[detector["id"]]))
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Draw at least one training area")
    assert not TrainingRun.objects.exists()
    assert client_for(personas.outsider).post(reverse("v1:detector-train", args=[detector["id"]])).status_code == 404


def test_cancel_a_queued_training(personas, project, client_for, django_capture_on_commit_callbacks):
    from detectors.models import Detector

    detector = Detector.objects.create(organization=personas.organization, name="d")
    run = TrainingRun.objects.create(detector=detector, version=1)
    client = client_for(personas.member)
    response = client.post(reverse("v1:trainingrun-cancel", args=[run.pk]))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    again = client.post(reverse("v1:trainingrun-cancel", args=[run.pk]))
    assert again.status_code == 400 and "already finished" in again.json()["detail"]
