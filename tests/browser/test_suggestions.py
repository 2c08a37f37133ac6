"""Where to label next in Chromium: when a training ends, its suggested squares appear on the map and in the Train
panel, ranked with their reasons; Show takes the view to one, and one click turns one into a training area and
another into an accuracy area (saved through the areas API like a drawn one)."""

from __future__ import annotations

import json

import pytest
from django.contrib.gis.geos import GEOSGeometry
from pyproj import Transformer
from shapely.geometry import box, mapping
from shapely.ops import transform as reproject

from detectors.models import Area, Detector, DetectorClass, DetectorImage, RunStatus, TrainingRun
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

REASONS = (
    "Many faint candidates, like the objects it missed in the accuracy areas.",
    "The detector changes its answer when the image is mirrored: it is unsure here.",
)


@pytest.fixture
def detector(personas, project, ready_sample_image):
    detector = Detector.objects.create(
        organization=personas.organization, project=project, name="Olive trees", created_by=personas.owner
    )
    DetectorClass.objects.create(detector=detector, name="tree", color="#E8590C", position=0)
    DetectorImage.objects.create(detector=detector, image=ready_sample_image)
    return detector


def _suggestions(image) -> tuple[dict, list[tuple[float, float, float, float]]]:
    """Two squares inside the image as a training run stores them, and their extents in Web Mercator."""
    footprint = GEOSGeometry(image.footprint.wkt, srid=4326).transform(3857, clone=True)
    x0, y0, x1, y1 = footprint.extent
    side = min(x1 - x0, y1 - y0)
    extents = [
        (x0 + 0.1 * side, y0 + 0.1 * side, x0 + 0.35 * side, y0 + 0.35 * side),
        (x0 + 0.6 * side, y0 + 0.6 * side, x0 + 0.85 * side, y0 + 0.85 * side),
    ]
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform
    features = [
        {
            "type": "Feature",
            "geometry": mapping(reproject(to_lonlat, box(*e))),
            "properties": {"rank": rank, "reason": REASONS[rank - 1], "score": 1.0 / rank, "image": str(image.pk)},
        }
        for rank, e in enumerate(extents, start=1)
    ]
    return {"type": "FeatureCollection", "features": features}, extents


def test_after_training_the_suggestions_are_listed_shown_and_become_areas_in_one_click(
    page, app_server, sign_in, personas, detector, ready_sample_image, screenshot
):
    run = TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.RUNNING, progress={"step": 3, "total": 500}
    )
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    page.locator("[data-testid=train-status][data-status=running]").wait_for()
    assert page.locator("[data-testid=suggestion]").count() == 0

    # The training ends: the panel, polling, shows the version and its suggestions, best first.
    suggestions, extents = _suggestions(ready_sample_image)
    TrainingRun.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED, metrics={"unoutlined": 0}, suggestions=suggestions
    )
    page.locator("[data-testid=map][data-suggestions='2']").wait_for(timeout=20_000)
    items = page.locator("[data-testid=suggestion]")
    assert [items.nth(i).get_attribute("data-rank") for i in range(2)] == ["1", "2"]
    assert [REASONS[i] in items.nth(i).inner_text() for i in range(2)] == [True, True]
    assert "suggestion" in page.locator("[data-testid=legend]").get_attribute("data-entries").split()
    screenshot("13-suggestions")

    # Show: the view goes to the second square, highlighted, with some ground around it.
    the_map = page.locator("[data-testid=map]")
    items.nth(1).locator("[data-testid=suggestion-show]").click()
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.focused === 'suggestion:2'")
    highlight = [float(v) for v in the_map.get_attribute("data-highlight").split(",")]
    assert highlight == pytest.approx(list(extents[1]), abs=0.01)

    # One click: the second becomes a training area (saved, as drawn), and leaves the map's suggestions.
    items.nth(1).locator("[data-testid=suggestion-training]").click()
    training = wait_for(lambda: Area.objects.filter(detector=detector, kind=Area.Kind.TRAINING).first(), timeout=15)
    to_lonlat = Transformer.from_crs("EPSG:3857", "EPSG:4326", always_xy=True).transform
    square = GEOSGeometry(json.dumps(mapping(reproject(to_lonlat, box(*extents[1])))), srid=4326)
    assert training.geometry.sym_difference(square).area < 1e-4 * square.area  # the same square, to rounding
    assert training.image_id == ready_sample_image.pk
    page.locator("[data-testid=suggestion][data-rank='2'][data-used=training]").wait_for()
    page.locator("[data-testid=map][data-suggestions='1']").wait_for()
    page.locator("[data-testid=save-status][data-state=saved]").wait_for()

    # And the first an accuracy area.
    items.nth(0).locator("[data-testid=suggestion-accuracy]").click()
    wait_for(lambda: Area.objects.filter(detector=detector, kind=Area.Kind.ACCURACY).exists(), timeout=15)
    page.locator("[data-testid=suggestion][data-rank='1'][data-used=accuracy]").wait_for()
    page.locator("[data-testid=map][data-suggestions='0']").wait_for()
    assert Area.objects.filter(detector=detector).count() == 2
    screenshot("14-suggestions-used")
