"""The whole product in Chromium with a real worker, as a newcomer meets it: upload, draw by mouse, train
(progress, score, predictions, the review of accuracy areas, the check of training areas), choose the version,
detect, download; and plain words when there is nothing to train on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pyproj import Transformer
from shapely import wkb
from shapely.geometry import shape

from detectors.exports import download_filename
from detectors.models import (
    Annotation,
    Area,
    DetectionRun,
    Detector,
    DetectorClass,
    DetectorImage,
    RunStatus,
    TrainingRun,
)
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from tests.browser.conftest import map_pixel
from tests.conftest import wait_for
from workers.ml.raster_io import image_crs_to_lonlat

pytestmark = pytest.mark.django_db(transaction=True)


# The sample image (512 x 512 px, 30 trees, seed 3) is split where no tree crosses: training areas left of
# column SPLIT_COL, an accuracy area right of it below row SPLIT_ROW, a testing area right of it above.
SPLIT_COL, SPLIT_ROW = 264, 224


def _pixel_boxes(sample) -> list[tuple[float, float, float, float]]:
    inverse = ~sample.transform
    boxes = []
    for tree in sample.objects:
        cols, rows = zip(*[inverse @ xy for xy in tree.exterior.coords], strict=True)
        boxes.append((min(cols), min(rows), max(cols), max(rows)))
    return boxes


@pytest.mark.slow
def test_a_newcomer_uploads_draws_trains_sees_the_score_detects_and_downloads(
    page, app_server, personas, project, celery_worker_process, screenshot, tmp_path
):
    """The whole flow of the product in one go, by mouse and keyboard only: sign in, upload a generated image,
    create a detector, draw a training area and outline the trees in it, an accuracy area with its trees and a
    testing area, train, read the score and the check of the training areas, detect, download the GeoJSON."""
    sample = write_sample_geotiff(tmp_path / "orchard-east.tif", size=512, trees=30, seed=3)
    boxes = _pixel_boxes(sample)
    assert not any(b[0] - 3 < SPLIT_COL < b[2] + 3 for b in boxes), "a tree crosses the training area's edge"
    assert not any(b[1] - 3 < SPLIT_ROW < b[3] + 3 for b in boxes if b[2] > SPLIT_COL)
    training_trees = [i for i, b in enumerate(boxes) if b[2] < SPLIT_COL]
    accuracy_trees = [i for i, b in enumerate(boxes) if b[0] > SPLIT_COL and b[1] > SPLIT_ROW]
    # One big tree in the training area is left without an outline, as first-time users do.
    forgotten = max(training_trees, key=lambda i: sample.objects[i].area)
    outlined = [i for i in training_trees if i != forgotten] + accuracy_trees

    # Sign in and upload.
    page.goto(f"{app_server.url}/app/")
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "pw-olivia")
    page.click("button[type=submit]")
    page.locator("[data-testid=project-card]", has_text="Vineyards").click()
    page.locator("h1", has_text="Vineyards").wait_for()
    page.set_input_files("[data-testid=file-input]", str(sample.path))
    page.locator("[data-testid=image-row][data-status=ready]", has_text="orchard-east").wait_for(timeout=120_000)

    # A detector for it, then the workspace.
    page.click("[data-testid=new-detector]")
    page.fill("input[name=detector-name]", "Orchard trees")
    page.fill("input[name=class-name]", "tree")
    page.click("[data-testid=detector-form] button[type=submit]")
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    detector = Detector.objects.get(name="Orchard trees")
    assert page.locator("[data-step=training-area][data-done=false]").count() == 1

    to_map = Transformer.from_crs(sample.crs, "EPSG:3857", always_xy=True)
    frame = page.locator("[data-testid=map]").bounding_box()

    def click_pixel(col: float, row: float) -> None:
        """Click the image's pixel (col, row) where the map shows it now."""
        x, y = to_map.transform(*(sample.transform @ (col, row)))
        px, py = map_pixel(page, x, y)
        page.mouse.click(frame["x"] + px, frame["y"] + py)

    def draw_polygon(corners: list[tuple[float, float]]) -> None:
        for corner in [*corners, corners[0]]:  # back on the first point: finishes the polygon
            click_pixel(*corner)

    def drawn() -> tuple[int, int]:
        return Area.objects.filter(detector=detector).count(), Annotation.objects.filter(detector=detector).count()

    page.keyboard.press("s")  # snapping off: the trees touch, and a circle's edge must not jump to a neighbour
    # Areas as polygons along the image's pixel grid (the map is Web Mercator: the UTM image sits a little
    # rotated, so a screen-aligned rectangle would clip the trees near its edges).
    page.keyboard.press("Shift+T")
    draw_polygon([(2, 2), (SPLIT_COL, 2), (SPLIT_COL, 510), (2, 510)])
    wait_for(lambda: drawn() == (1, 0), timeout=15)
    page.keyboard.press("c")
    for n, i in enumerate(outlined, start=1):
        if i == accuracy_trees[0]:  # the training trees are done: the accuracy area first, then its trees
            page.keyboard.press("Shift+A")
            draw_polygon([(SPLIT_COL + 2, SPLIT_ROW), (510, SPLIT_ROW), (510, 510), (SPLIT_COL + 2, 510)])
            page.keyboard.press("c")
        c0, r0, c1, r1 = boxes[i]
        click_pixel((c0 + c1) / 2, (r0 + r1) / 2)
        click_pixel(c1 - 0.5, (r0 + r1) / 2)
        if n % 8 == 0:
            page.locator("[data-testid=save-status][data-state=saved]").wait_for()
    page.keyboard.press("Shift+E")
    draw_polygon([(SPLIT_COL + 2, 2), (510, 2), (510, SPLIT_ROW - 2), (SPLIT_COL + 2, SPLIT_ROW - 2)])
    wait_for(lambda: drawn() == (3, len(outlined)), timeout=30)
    page.keyboard.press("Escape")
    page.locator("[data-testid=save-status][data-state=saved]").wait_for()
    assert sorted(Area.objects.filter(detector=detector).values_list("kind", flat=True)) == [
        "accuracy",
        "testing",
        "training",
    ]
    # Each circle covers the tree it was drawn on (the image's trees are discs).
    image = Image.objects.get(project=project)
    for annotation in Annotation.objects.filter(detector=detector):
        outline = wkb.loads(bytes(annotation.geometry.transform(image.crs, clone=True).wkb))
        best = max(outlined, key=lambda i: outline.intersection(sample.objects[i]).area)
        assert outline.intersection(sample.objects[best]).area > 0.7 * sample.objects[best].union(outline).area
    for step in ("training-area", "outlines", "accuracy-area", "testing-area"):
        assert page.locator(f"[data-step={step}][data-done=true]").count() == 1, step
    assert page.locator("[data-testid=map]").get_attribute("data-flagged") == "0"
    screenshot("09-training-data-drawn")

    # Train: progress, then the score, predictions, the review and the check of the training areas.
    page.click("[data-testid=train-button]")
    assert page.locator("[data-testid=train-button]").is_disabled()
    page.locator("[data-testid=train-status][data-status=running] [role=progressbar]").wait_for(timeout=120_000)
    page.locator("[data-testid=train-steps]", has_text="Step").wait_for(timeout=60_000)
    screenshot("10-training")
    page.locator("[data-testid=train-status][data-status=succeeded]").wait_for(timeout=300_000)
    run = TrainingRun.objects.get(detector=detector)
    assert run.status == RunStatus.SUCCEEDED
    assert run.stats["training_annotations_count"] == len(outlined) - len(accuracy_trees)
    score = page.locator("[data-testid=score]")
    assert float(score.get_attribute("data-score")) == pytest.approx(run.metrics["score"], abs=0.01)
    assert "F-score" in score.inner_text() and "Precision" in score.inner_text()
    overall = run.metrics["overall"]
    assert overall["n_true"] == len(accuracy_trees)
    assert f"Found {overall['matches']} of {overall['n_true']}" in score.inner_text()
    assert int(page.locator("[data-testid=loss-chart]").get_attribute("data-points")) > 1
    # what was trained and for how long, in plain words under the score, and on the version's row
    trained = page.locator("[data-testid=train-summary]").inner_text()
    assert trained.startswith(f"Trained {run.progress['step']} steps in ") and "It stopped because" in trained
    assert trained in page.locator("[data-testid=version-row][data-version='1'] .version-pick").get_attribute("title")
    the_map = page.locator("[data-testid=map]")
    page.wait_for_function("() => +document.querySelector('[data-testid=map]').dataset.review > 0")
    assert int(the_map.get_attribute("data-review")) == len(run.review["features"])
    assert int(the_map.get_attribute("data-predictions")) == run.predicted_objects.count()
    assert page.locator("[data-testid=layer-review]").is_checked()
    page.wait_for_timeout(500)
    screenshot("11-trained-score")

    # The check of the training areas: it points at the tree left without an outline.
    check = page.locator("[data-testid=unoutlined-check]")
    flagged = [shape(f["geometry"]) for f in run.review["features"] if f["properties"]["kind"] == "unoutlined"]
    assert int(check.get_attribute("data-count")) == run.metrics["unoutlined"] == len(flagged)
    # Whether the detector sees the tree taught as background varies between runs (it did in most of ours):
    # what is asserted is that whatever the run flagged is what the user is shown and taken to.
    left_out = image_crs_to_lonlat(sample.objects[forgotten], sample.crs)
    print("the tree left without an outline was flagged:", any(p.intersects(left_out) for p in flagged))
    if flagged:
        page.click("[data-testid=show-unoutlined]")
        page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.focused === 'unoutlined:0'")
        assert "1 of" in check.inner_text()
        page.wait_for_timeout(600)
        screenshot("12-unoutlined-check")
    else:
        assert "Nothing found in your training areas" in check.inner_text()

    row = page.locator("[data-testid=version-row][data-version='1']")
    assert row.get_attribute("data-status") == "succeeded"
    assert row.locator("[data-testid=use-version]").is_checked()  # the newest successful version by default
    assert not page.locator("[data-testid=train-button]").is_disabled()

    # A newer version (as a second training would leave): Detect follows it, until v1 is chosen.
    TrainingRun.objects.create(detector=detector, version=2, status=RunStatus.SUCCEEDED, metrics={"score": 41.0})
    page.reload()
    page.locator("[data-testid=version-row]").nth(1).wait_for()
    assert page.locator("[data-testid=version-row][data-version='2'] [data-testid=use-version]").is_checked()
    page.locator("[data-testid=version-row][data-version='1'] [data-testid=use-version]").check()
    page.locator(".toast", has_text="Detect now uses version 1").wait_for()
    assert Detector.objects.get(pk=detector.pk).active_training_run_id == run.pk
    page.click("[data-testid=version-row][data-version='1'] .version-pick")  # and look at its score again
    page.locator("[data-testid=train-status][data-version='1'] [data-testid=score]").wait_for()

    # Detect with the chosen version: progress, counts, the objects as vector tiles, the GeoJSON download.
    page.click("[data-testid=detect-button]")
    page.locator("[data-testid=detect-status][data-status=succeeded]").wait_for(timeout=180_000)
    detection = DetectionRun.objects.get(detector=detector)
    assert detection.training_run_id == run.pk and detection.objects_count > 0
    assert (
        f"{detection.cells_total} of {detection.cells_total} parts done"
        in page.locator("[data-testid=detect-progress]").inner_text()
    )
    page.locator("[data-testid=detect-counts]").wait_for()
    counted = sum(int(c.replace(",", "")) for c in page.locator("[data-testid=count-value]").all_inner_texts())
    assert counted == detection.objects_count
    page.wait_for_function("() => +document.querySelector('[data-testid=map]').dataset.detectionTiles > 0")
    assert the_map.get_attribute("data-detection") == str(detection.pk)
    with page.expect_download() as download:
        page.click("[data-testid=downloads] a[data-format=geojson]")
    # named after what it holds, not "objects.geojson": detector, image, version and date
    name = download.value.suggested_filename
    assert name == download_filename(detection, "geojson")
    assert name.startswith("orchard-trees-") and "-v1-" in name and name.endswith(".geojson"), name
    collection = json.loads(Path(download.value.path()).read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == detection.objects_count
    assert all(f["geometry"]["type"] == "Polygon" for f in collection["features"])
    # Lon/lat, on the image: every object found lies within the image's footprint.
    footprint = shape(json.loads(image.footprint.geojson)).buffer(1e-6)
    assert all(footprint.contains(shape(f["geometry"]).representative_point()) for f in collection["features"])
    # Most trees are found (the image holds 30; the detector learned from a dozen and a half).
    hits = sum(
        any(shape(f["geometry"]).intersects(image_crs_to_lonlat(t, sample.crs)) for f in collection["features"])
        for t in sample.objects
    )
    assert hits >= 0.6 * len(sample.objects), hits
    page.wait_for_timeout(500)
    screenshot("13-detected")


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
