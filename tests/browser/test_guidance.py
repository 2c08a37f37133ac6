"""The workspace's guidance in Chromium, as a newcomer sees it: checklist items that follow what is drawn, Train's
error going once its cause has, the edge rule shown as training applies it (an outline crossing an area's edge
used by its inside part, one outside every area flagged as ignored), "All set" only with nothing open; the check
of the training areas taking the user to each find at a useful scale, highlighted, with next and previous; the
time left from the measured step rate."""

from __future__ import annotations

import pytest
from django.contrib.gis.geos import GEOSGeometry
from pyproj import Transformer
from shapely.geometry import box, mapping
from shapely.ops import transform as reproject

from detectors.models import Annotation, Area, Detector, DetectorClass, DetectorImage, RunStatus, TrainingRun
from detectors.training_inputs import gather_training_inputs, training_stats
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def detector(personas, project, ready_sample_image):
    detector = Detector.objects.create(
        organization=personas.organization, project=project, name="Olive trees", created_by=personas.owner
    )
    DetectorClass.objects.create(detector=detector, name="tree", color="#E8590C", position=0)
    DetectorImage.objects.create(detector=detector, image=ready_sample_image)
    return detector


def counts(detector) -> tuple[int, int]:
    return Area.objects.filter(detector=detector).count(), Annotation.objects.filter(detector=detector).count()


def step_done(page, step: str) -> bool:
    return page.locator(f"[data-step={step}]").get_attribute("data-done") == "true"


def test_checklist_errors_and_the_edge_rule_follow_what_is_drawn(
    page, app_server, sign_in, personas, detector, screenshot
):
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    the_map = page.locator("[data-testid=map][data-ready=true]")
    the_map.wait_for()
    box_ = page.locator("[data-testid=map]").bounding_box()
    cx, cy = box_["x"] + box_["width"] / 2, box_["y"] + box_["height"] / 2 + 20
    problems = page.locator("[data-testid=train-problems]")
    checklist = page.locator("[data-testid=checklist]")

    def rectangle(key: str, a: tuple[float, float], b: tuple[float, float], expected: tuple[int, int]) -> None:
        page.keyboard.press(key)
        page.mouse.click(cx + a[0], cy + a[1])
        page.mouse.click(cx + b[0], cy + b[1])
        wait_for(lambda: counts(detector) == expected, timeout=15)
        page.locator("[data-testid=save-status][data-state=saved]").wait_for()

    # Nothing drawn: Train says what to do, and the checklist agrees.
    page.click("[data-testid=train-button]")
    problems.get_by_text("Draw at least one training area").wait_for()
    assert not step_done(page, "training-area") and checklist.get_attribute("data-ready") == "false"

    # A training area: that error goes (the server is asked again), the next one is what is left.
    rectangle("t", (-260, -230), (-40, 60), (1, 0))
    problems.get_by_text("Outline the objects inside your training areas").wait_for()
    assert "Draw at least one training area" not in problems.inner_text()
    assert step_done(page, "training-area") and not step_done(page, "outlines")

    # An outline crossing the area's edge: used by its inside part (the server agrees), and said so.
    rectangle("r", (-80, -100), (-10, -60), (1, 1))
    page.locator("[data-testid=train-problems]:empty").wait_for(state="attached")
    page.locator("[data-testid=map][data-clipped='1'][data-flagged='0']").wait_for()
    note = page.locator("[data-testid=note-clipped]")
    assert "Training learns only the part inside the training area" in note.inner_text()
    assert step_done(page, "outlines")
    [inputs] = gather_training_inputs(detector)
    assert training_stats(detector, [inputs])["training_annotations_count"] == 1
    crossing = inputs.training_outlines[0][0]
    assert 0 < crossing.intersection(inputs.training_areas[0]).area < crossing.area

    # An accuracy area: its step stays open until an outline is drawn in it.
    rectangle("a", (100, 80), (260, 230), (2, 1))
    assert not step_done(page, "accuracy-area")
    assert "1 accuracy area has no outline yet" in checklist.inner_text()
    rectangle("r", (150, 130), (190, 170), (2, 2))
    page.locator("[data-step=accuracy-area][data-done=true]").wait_for()
    page.locator("[data-testid=all-set]").wait_for()

    # An outline outside every area: flagged as ignored (and the server leaves it out), no "All set" beside it.
    rectangle("r", (150, -200), (190, -160), (2, 3))
    page.locator("[data-testid=map][data-flagged='1'][data-clipped='1']").wait_for()
    warning = page.locator("[data-testid=warning-flagged]").inner_text()
    assert "wholly outside every training and accuracy area, so training and the score ignore it" in warning
    assert page.locator("[data-testid=all-set]").count() == 0
    assert checklist.get_attribute("data-ready") == "false"
    [inputs] = gather_training_inputs(detector)
    assert training_stats(detector, [inputs])["training_annotations_count"] == 1
    screenshot("07b-workspace-edge-rule")
    # its "Show me" shows it as a find is shown: highlighted, a few of its widths across (not the whole image)
    page.click("[data-testid=show-flagged]")
    page.wait_for_function(
        """() => { const d = document.querySelector('[data-testid=map]').dataset;
          if (d.focused !== 'flagged' || d.viewMoving !== 'false') return false;
          const [x0, y0, x1, y1] = d.highlight.split(',').map(Number), size = Math.max(x1 - x0, y1 - y0);
          const span = Math.min(...d.viewSize.split(',').map(Number)) * Number(d.viewResolution);
          return 3 * size <= span && span <= 5 * size; }"""
    )
    page.keyboard.press("Control+z")
    wait_for(lambda: counts(detector) == (2, 2), timeout=15)
    page.locator("[data-testid=map][data-flagged='0']").wait_for()
    page.locator("[data-testid=all-set]").wait_for()

    # A second training area, empty: the outlines step is open again and says so, "All set" goes.
    rectangle("t", (-260, 100), (-120, 230), (3, 2))
    page.locator("[data-step=outlines][data-done=false]").wait_for()
    assert "1 outline in 1 of 2 training areas" in checklist.inner_text()
    page.locator("[data-testid=warning-empty]").wait_for()
    assert page.locator("[data-testid=all-set]").count() == 0


def _unoutlined_review(image) -> tuple[dict, list[tuple[float, float, float, float]], tuple]:
    """Three finds on the image (two small, one larger than a quarter of it) as the review serves them, with
    their extents in Web Mercator and the image's."""
    footprint = GEOSGeometry(image.footprint.wkt, srid=4326).transform(3857, clone=True)
    x0, y0, x1, y1 = footprint.extent
    side = min(x1 - x0, y1 - y0)
    extents = [
        (x0 + 0.3 * side, y0 + 0.3 * side, x0 + 0.3 * side + 4, y0 + 0.3 * side + 3),
        (x0 + 0.6 * side, y0 + 0.55 * side, x0 + 0.6 * side + 6, y0 + 0.55 * side + 6),
        (x0 + 0.2 * side, y0 + 0.2 * side, x0 + 0.8 * side, y0 + 0.8 * side),
    ]
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform
    features = [
        {
            "type": "Feature",
            "geometry": mapping(reproject(to_lonlat, box(*e))),
            "properties": {"kind": "unoutlined", "class": "tree", "image": str(image.pk)},
        }
        for e in extents
    ]
    return {"type": "FeatureCollection", "features": features}, extents, (x0, y0, x1, y1)


def test_show_me_takes_the_view_to_each_find_at_a_few_widths_highlighted_with_next_and_previous(
    page, app_server, sign_in, personas, detector, ready_sample_image, screenshot
):
    review, extents, image_extent = _unoutlined_review(ready_sample_image)
    TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.SUCCEEDED, metrics={"unoutlined": 3}, review=review
    )
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    page.locator("[data-testid=map][data-ready=true][data-review='3']").wait_for()
    the_map = page.locator("[data-testid=map]")

    def view() -> tuple[float, float, float, float]:
        """The view's centre, and its span across the shorter and the longer side, in map units."""
        center, resolution, size = the_map.evaluate(
            "e => [e.dataset.viewCenter, e.dataset.viewResolution, e.dataset.viewSize]"
        )
        x, y = (float(v) for v in center.split(","))
        w, h = (float(v) for v in size.split(","))
        return x, y, min(w, h) * float(resolution), max(w, h) * float(resolution)

    def settled_on(extent) -> tuple[float, float, float, float]:
        """Wait until the view's centre is the extent's (the view glides there), then describe the view."""
        mx, my = (extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2
        page.wait_for_function(
            "([x, y]) => { const [cx, cy] = document.querySelector('[data-testid=map]').dataset.viewCenter"
            ".split(',').map(Number); return Math.hypot(cx - x, cy - y) < 0.05; }",
            arg=[mx, my],
        )
        # the centre is reached while the glide still zooms: read the view once the map says the move ended
        page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.viewMoving === 'false'")
        return view()

    def highlighted() -> list[float]:
        return [float(v) for v in the_map.get_attribute("data-highlight").split(",")]

    where = page.locator("[data-testid=unoutlined-where]")
    page.click("[data-testid=show-unoutlined]")
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.focused === 'unoutlined:0'")
    _, _, short, _ = settled_on(extents[0])
    size = max(extents[0][2] - extents[0][0], extents[0][3] - extents[0][1])
    assert 3 * size <= short <= 5 * size, (short, size)  # a few object widths, not the whole image
    assert highlighted() == pytest.approx(list(extents[0]), abs=0.01)
    assert where.inner_text().strip() == "1 of 3 on this image"
    screenshot("12b-show-me")

    page.click("[data-testid=unoutlined-next]")
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.focused === 'unoutlined:1'")
    _, _, short, _ = settled_on(extents[1])
    assert 3 * 6 <= short <= 5 * 6
    assert highlighted() == pytest.approx(list(extents[1]), abs=0.01)
    assert where.inner_text().strip() == "2 of 3 on this image"

    # Previous twice goes round to the last find: larger than a quarter of the image, shown whole but the view
    # never zooms out past the image to give it room.
    page.click("[data-testid=unoutlined-prev]")
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.focused === 'unoutlined:0'")
    page.click("[data-testid=unoutlined-prev]")
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.focused === 'unoutlined:2'")
    _, _, short, _ = settled_on(extents[2])
    big = extents[2][2] - extents[2][0]
    image_side = max(image_extent[2] - image_extent[0], image_extent[3] - image_extent[1])
    assert big <= short <= image_side * 1.001
    assert highlighted() == pytest.approx(list(extents[2]), abs=0.01)
    assert where.inner_text().strip() == "3 of 3 on this image"


def test_time_left_is_the_measured_one_and_absent_until_known(page, app_server, sign_in, personas, detector):
    run = TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.RUNNING, progress={"step": 3, "total": 500, "loss": 1.0}
    )
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    steps = page.locator("[data-testid=train-steps]")
    steps.get_by_text("Step 3 of 500").wait_for()
    assert "left" not in steps.inner_text()  # too few steps measured: no guess
    TrainingRun.objects.filter(pk=run.pk).update(
        progress={"step": 120, "total": 500, "loss": 0.5, "seconds_left": 42.0}
    )
    steps.get_by_text("Step 120 of 500 · about 40 s left").wait_for()
