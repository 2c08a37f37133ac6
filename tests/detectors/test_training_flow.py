"""Train from the API with a real worker process: areas and outlines in, a scored version out."""

from __future__ import annotations

import pytest
from django.urls import reverse
from shapely.geometry import box, mapping

from detectors.models import DetectedObject, RunStatus, TrainingRun
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from tests.conftest import wait_for
from workers.ml.raster_io import image_crs_to_lonlat


@pytest.fixture
def trainable(personas, project, client_for, tmp_path):
    """A ready image of trees with a detector, training/testing/accuracy areas and every tree outlined."""
    sample = write_sample_geotiff(tmp_path / "trees.tif", size=512, trees=40, seed=3)
    client = client_for(personas.owner)
    with sample.path.open("rb") as fh:
        image_id = client.post(
            reverse("v1:image-list"), {"project": str(project.pk), "file": fh}, format="multipart"
        ).json()["id"]
    # With a worker running, the upload's own ingest job may get there first; then this call does nothing.
    ingest_image(image_id)
    image = wait_for(
        lambda: Image.objects.filter(pk=image_id, status__in=(Image.Status.READY, Image.Status.FAILED)).first(),
        timeout=120,
    )
    assert image.status == Image.Status.READY, image.error
    detector = client.post(
        reverse("v1:detector-list"),
        {"organization": str(personas.organization.pk), "name": "Trees", "initial_classes": [{"name": "tree"}]},
        format="json",
    ).json()
    client.post(reverse("v1:detectorimage-list"), {"detector": detector["id"], "image": image_id}, format="json")
    left, top = sample.transform.c, sample.transform.f
    size = 512 * sample.transform.a
    areas = {
        "training": box(left, top - size, left + 0.6 * size, top),
        "accuracy": box(left + 0.6 * size, top - size, left + size, top - 0.5 * size),
        "testing": box(left + 0.6 * size, top - 0.5 * size, left + size, top),
    }

    def post(basename, geometry, **extra):
        lonlat = mapping(image_crs_to_lonlat(geometry, sample.crs))
        geojson = {"type": "Polygon", "coordinates": [[list(p) for p in ring] for ring in lonlat["coordinates"]]}
        response = client.post(
            reverse(f"v1:{basename}-list"),
            {"detector": detector["id"], "image": image_id, "geometry": geojson, **extra},
            format="json",
        )
        assert response.status_code == 201, response.json()

    for kind, geometry in areas.items():
        post("area", geometry, kind=kind)
    for tree in sample.objects:
        post("annotation", tree)
    return client, detector, image_id


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_train_from_the_api_with_a_worker(celery_worker_process, trainable, personas, client_for):
    client, detector, image_id = trainable
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
