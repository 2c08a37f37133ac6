"""A change detector in Chromium with a real worker: create it, choose the second date, draw on the pair in the
swipe view (outlines on both sides of the divider), train and detect on the pair."""

from __future__ import annotations

import pytest
from pyproj import Transformer
from shapely.geometry import Point

from detectors.models import Annotation, Area, DetectionRun, Detector, DetectorImage, RunStatus, TrainingRun
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.uploads import store_small_upload
from tests.browser.conftest import map_pixel
from tests.conftest import wait_for
from workers.ml.synthetic_change import tiny_pair

pytestmark = pytest.mark.django_db(transaction=True)
SIZE = 256


def _ingested(project, user, path, name: str) -> Image:
    with path.open("rb") as file:
        image = store_small_upload(project, user, file, filename=f"{name}.tif", name=name)
    assert ingest_image(str(image.pk)) == Image.Status.READY
    return Image.objects.get(pk=image.pk)


@pytest.mark.slow
def test_draw_on_a_pair_in_the_swipe_view_train_and_detect(
    page, app_server, sign_in, personas, project, celery_worker_process, screenshot, tmp_path
):
    pair = tiny_pair(seed=1, size=SIZE)
    before_path, after_path = pair.write(tmp_path / "pair")
    before = _ingested(project, personas.owner, before_path, "Village 2019")
    after = _ingested(project, personas.owner, after_path, "Village 2024")
    changes = [g for g, _ in pair.changes]
    every_disc_box = [g.bounds for g in changes]
    # Training left of `split` (a column no new disc crosses), accuracy right of it.
    split = next(c for c in range(150, 190) if not any(b[0] - 3 < c < b[2] + 3 for b in every_disc_box))
    training = [g for g in changes if g.bounds[2] < split]
    accuracy = [g for g in changes if g.bounds[0] > split]
    assert len(training) >= 5 and len(accuracy) >= 3

    # Create the change detector from the project page: the first date checked, the second chosen later.
    sign_in(personas.owner)
    page.goto(f"{app_server.url}/app/projects/{project.pk}")
    page.locator("[data-testid=image-row][data-status=ready]").nth(1).wait_for()
    page.click("[data-testid=new-detector]")
    page.fill("input[name=detector-name]", "New discs")
    page.select_option("[data-testid=detector-kind]", "change")
    page.fill("input[name=class-name]", "new disc")
    form = page.locator("[data-testid=detector-form]")
    form.locator("label.check", has_text="Village 2019").locator("input").check()
    form.locator("label.check", has_text="Village 2024").locator("input").uncheck()
    form.locator("button[type=submit]").click()
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    detector = Detector.objects.get(name="New discs")
    assert detector.kind == Detector.Kind.CHANGE
    assert list(DetectorImage.objects.filter(detector=detector).values_list("image_id", flat=True)) == [before.pk]

    # Train says what is missing; choosing the second date answers it, and the swipe view shows that date right
    # of the divider, each side named.
    page.click("[data-testid=train-button]")
    page.locator("[data-testid=train-problems]", has_text="Choose the second date of each image").wait_for()
    the_map = page.locator("[data-testid=map]")
    page.select_option("[data-testid=second-date-select]", str(after.pk))
    page.locator("[data-testid=train-problems]", has_text="Draw at least one training area").wait_for()
    page.wait_for_function(
        f"() => document.querySelector('[data-testid=map]').dataset.secondImage === '{after.pk}'"
    )
    assert DetectorImage.objects.get(detector=detector).second_image_id == after.pk
    assert page.locator("[data-testid=swipe-before]").inner_text() == "First date: Village 2019"
    assert page.locator("[data-testid=swipe-after]").inner_text() == "Second date: Village 2024"

    to_map = Transformer.from_crs(before.crs, "EPSG:3857", always_xy=True)
    frame = the_map.bounding_box()

    def screen(col: float, row: float) -> tuple[float, float]:
        x, y = to_map.transform(*(pair.before.transform @ (col, row)))
        px, py = map_pixel(page, x, y)
        return frame["x"] + px, frame["y"] + py

    # The divider dragged to the middle of the training half: outlines are drawn over both dates.
    handle = page.locator("[data-testid=swipe-handle]").bounding_box()
    divider_x = screen(split / 2, 0)[0]
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(divider_x, handle["y"] + handle["height"] / 2, steps=5)
    page.mouse.up()
    swipe = float(the_map.get_attribute("data-swipe"))
    assert swipe == pytest.approx((divider_x - frame["x"]) / frame["width"], abs=0.01)
    screenshot("change-01-swipe")

    def click_pixel(col: float, row: float) -> None:
        page.mouse.click(*screen(col, row))

    def draw_polygon(corners: list[tuple[float, float]]) -> None:
        for corner in [*corners, corners[0]]:
            click_pixel(*corner)

    def drawn() -> tuple[int, int]:
        return Area.objects.filter(detector=detector).count(), Annotation.objects.filter(detector=detector).count()

    page.keyboard.press("s")  # snapping off
    page.keyboard.press("Shift+T")
    draw_polygon([(2, 2), (split, 2), (split, SIZE - 2), (2, SIZE - 2)])
    wait_for(lambda: drawn() == (1, 0), timeout=15)
    page.keyboard.press("Shift+A")
    draw_polygon([(split + 2, 2), (SIZE - 2, 2), (SIZE - 2, SIZE - 2), (split + 2, SIZE - 2)])
    wait_for(lambda: drawn() == (2, 0), timeout=15)
    page.keyboard.press("c")
    sides = []
    for n, disc in enumerate(training + accuracy, start=1):
        c0, r0, c1, r1 = disc.bounds
        click_pixel((c0 + c1) / 2, (r0 + r1) / 2)
        click_pixel(c1 - 0.5, (r0 + r1) / 2)
        sides.append("first" if screen((c0 + c1) / 2, 0)[0] < divider_x else "second")
        if n % 8 == 0:
            page.locator("[data-testid=save-status][data-state=saved]").wait_for()
    page.keyboard.press("Escape")
    wait_for(lambda: drawn() == (2, len(training) + len(accuracy)), timeout=30)
    page.locator("[data-testid=save-status][data-state=saved]").wait_for()
    assert {"first", "second"} <= set(sides), sides
    # each outline was stored on the pair's first image, over the disc it was drawn on
    image_crs = Transformer.from_crs("EPSG:4326", before.crs, always_xy=True)
    for annotation in Annotation.objects.filter(detector=detector):
        assert annotation.image_id == before.pk
        lon, lat = annotation.geometry.centroid.coords
        col, row = ~pair.before.transform @ image_crs.transform(lon, lat)
        assert any(d.buffer(2).contains(Point(col, row)) for d in training + accuracy)
    screenshot("change-02-drawn")

    # Train on the pair, then detect on it.
    page.click("[data-testid=train-button]")
    page.locator("[data-testid=train-status][data-status=succeeded]").wait_for(timeout=300_000)
    run = TrainingRun.objects.get(detector=detector)
    assert run.status == RunStatus.SUCCEEDED and run.stats["validation_annotations_count"] == len(accuracy)
    assert page.locator("[data-testid=score]").get_attribute("data-score") is not None
    page.click("[data-testid=detect-button]")
    page.locator("[data-testid=detect-status][data-status=succeeded]").wait_for(timeout=180_000)
    detection = DetectionRun.objects.get(detector=detector)
    assert detection.second_image_id == after.pk and list(detection.images.all()) == [before]
    assert detection.objects_count > 0
    page.wait_for_function("() => +document.querySelector('[data-testid=map]').dataset.detectionTiles > 0")
    screenshot("change-03-detected")

