"""Detect over a whole image, cell by cell in a real worker: every object once, exports to download."""

from __future__ import annotations

import csv
import io
from urllib.parse import urlsplit

import pyogrio
import pytest
import rasterio
from django.urls import reverse
from rasterio.windows import Window

from detectors.models import DetectedObject, DetectionCell, DetectionRun, RunStatus
from imagery.models import Image
from imagery.storage import get_blob_store
from tests.conftest import wait_for
from workers.pipelines import load_trained_model


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_detection_in_cells_reports_each_object_once(celery_workers, trained_version, settings):
    # The model is compared with itself (cells against one window): the session's model (a fixed number of
    # steps, so the same on a busy or a quiet machine); training through a worker is test_training_flow's.
    celery_workers.start()
    client, detector_data, image_id, trained = trained_version
    settings.DETECTION_CELL_SIZE = 160  # 4 x 4 cells over 512 px: many trees straddle cell borders

    response = client.post(
        reverse("v1:detector-detect", args=[detector_data["id"]]), {"images": [image_id]}, format="json"
    )
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    assert response.json()["cells_total"] == 16

    def finished():
        run = DetectionRun.objects.get(pk=run_id)
        return run if run.status not in (RunStatus.PENDING, RunStatus.RUNNING) else None

    run = wait_for(finished, timeout=240, interval=1)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.cells_done == 16 and run.cells_failed == 0
    assert run.progress["megapixels_done"] == pytest.approx(512 * 512 / 1e6, rel=1e-3)

    # The same model over the whole image in one window finds the same objects: none lost, none doubled.
    image = Image.objects.get(pk=image_id)
    model = load_trained_model(trained)
    from workers.ml.predict import predict_window

    with rasterio.open(get_blob_store().gdal_path(image.cog_key)) as src:
        whole = predict_window(model, src, Window(0, 0, src.width, src.height))
    objects = list(DetectedObject.objects.filter(detection_run_id=run_id))
    assert run.objects_count == len(objects)
    assert abs(len(objects) - len(whole)) <= max(1, len(whole) // 20)
    for i, a in enumerate(objects):
        for b in objects[i + 1 :]:
            overlap = a.geometry.intersection(b.geometry).area
            assert overlap < 0.5 * min(a.geometry.area, b.geometry.area), "an object was reported twice"

    links = client.get(reverse("v1:detectionrun-downloads", args=[run_id])).json()
    assert set(links) == {"geojson", "gpkg", "csv"}
    geojson = client.get(path_of(links["geojson"]))
    collection = __import__("json").loads(b"".join(geojson.streaming_content))
    assert len(collection["features"]) == len(objects)
    assert {f["geometry"]["type"] for f in collection["features"]} == {"Polygon"}
    rows = list(csv.DictReader(io.StringIO(b"".join(client.get(path_of(links["csv"])).streaming_content).decode())))
    assert sum(int(r["count"]) for r in rows) == len(objects)
    gpkg = get_blob_store().gdal_path(run.result_keys["gpkg"])
    assert pyogrio.read_info(gpkg)["features"] == len(objects)
    assert DetectionCell.objects.filter(run_id=run_id, status="done").count() == 16


def test_detect_needs_a_trained_version(personas, project, ready_image, client_for):
    client = client_for(personas.owner)
    detector = client.post(
        reverse("v1:detector-list"), {"organization": str(personas.organization.pk), "name": "New"}, format="json"
    ).json()
    response = client.post(
        reverse("v1:detector-detect", args=[detector["id"]]), {"images": [str(ready_image.pk)]}, format="json"
    )
    assert response.status_code == 400
    assert "Train the detector first" in response.json()["detail"]
