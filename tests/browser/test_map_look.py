"""What the workspace's map looks like to a user, in Chromium: a legend always on screen that lists exactly what
is shown, each kind of thing drawn in its own style (the legend's swatches and the map's pixels differ), layer
toggles that hide and show, the detected objects' opacity, hovering and clicking any object for what it is, fit
to each area, a readable scale bar, and the detector cards' status, version and score.

The scene is seeded through the ORM (areas, outlines, a trained version with its predictions and review, a
detection) so each layer's shapes sit at known places of the image."""

from __future__ import annotations

import io
import math

import pytest
from django.contrib.gis.geos import Polygon
from PIL import Image as PILImage
from pyproj import Geod

from detectors.models import (
    Annotation,
    Area,
    DetectedObject,
    DetectionRun,
    Detector,
    DetectorClass,
    DetectorImage,
    RunStatus,
    TrainingRun,
)
from tests.browser.conftest import map_pixel

pytestmark = pytest.mark.django_db(transaction=True)

TREE, SHRUB = "#F76707", "#364FC7"
EARTH = 6378137.0
# A page function: the view is centred on [x, y] (EPSG:3857) within half a metre.
CENTERED_ON = (
    "([x, y]) => { const map = document.querySelector('[data-testid=map]');"
    " const [cx, cy] = map.dataset.viewCenter.split(',').map(Number); return Math.hypot(cx - x, cy - y) < 0.5; }"
)


class Scene:
    """Boxes as fractions (x0, y0, x1, y1) of the image's footprint, y up; lon/lat and Web Mercator from them."""

    def __init__(self, image) -> None:
        self.x0, self.y0, self.x1, self.y1 = image.footprint.extent

    def lonlat(self, box) -> Polygon:
        a, b, c, d = box
        w, h = self.x1 - self.x0, self.y1 - self.y0
        return Polygon.from_bbox((self.x0 + a * w, self.y0 + b * h, self.x0 + c * w, self.y0 + d * h))

    def mercator_center(self, box) -> tuple[float, float]:
        lon, lat = self.lonlat(box).centroid.coords
        return EARTH * math.radians(lon), EARTH * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))

    def feature(self, box, **properties) -> dict:
        return {
            "type": "Feature",
            "geometry": {"type": "Polygon", "coordinates": self.lonlat(box).coords},
            "properties": properties,
        }


BOXES = {
    "training": (0.05, 0.05, 0.45, 0.45),
    "testing": (0.55, 0.05, 0.95, 0.45),
    "accuracy": (0.05, 0.55, 0.45, 0.95),
    "tree": (0.08, 0.08, 0.18, 0.18),
    "shrub": (0.25, 0.25, 0.35, 0.35),
    "ignored": (0.47, 0.47, 0.53, 0.53),
    "prediction": (0.62, 0.12, 0.74, 0.24),
    "match": (0.08, 0.60, 0.18, 0.70),
    "false_detection": (0.25, 0.60, 0.37, 0.72),
    "miss": (0.08, 0.80, 0.18, 0.90),
    "unoutlined": (0.33, 0.08, 0.43, 0.18),
}
DETECTED = [(0.58 + 0.12 * i, 0.58 + 0.12 * j, 0.66 + 0.12 * i, 0.66 + 0.12 * j) for i in range(3) for j in range(3)]


@pytest.fixture
def scene(personas, project, ready_sample_image):
    image = ready_sample_image
    s = Scene(image)
    detector = Detector.objects.create(organization=personas.organization, project=project, name="Orchard trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree", color=TREE, position=0)
    shrub = DetectorClass.objects.create(detector=detector, name="shrub", color=SHRUB, position=1)
    DetectorImage.objects.create(detector=detector, image=image)
    for kind in ("training", "testing", "accuracy"):
        Area.objects.create(detector=detector, image=image, kind=kind, geometry=s.lonlat(BOXES[kind]))
    for name, cls in (("tree", tree), ("shrub", shrub), ("ignored", tree)):
        Annotation.objects.create(detector=detector, image=image, detector_class=cls, geometry=s.lonlat(BOXES[name]))
    review = [
        s.feature(BOXES[k], kind=k, **{"class": "tree"}, image=str(image.pk))
        for k in ("match", "false_detection", "miss", "unoutlined")
    ]
    run = TrainingRun.objects.create(
        detector=detector,
        version=1,
        status=RunStatus.SUCCEEDED,
        metrics={"score": 72.0, "overall": {"precision": 0.8, "recall": 0.66, "f1": 0.72}, "per_area": []},
        review={"type": "FeatureCollection", "features": review},
    )
    DetectedObject.objects.create(
        training_run=run,
        image=image,
        detector_class=tree,
        geometry=s.lonlat(BOXES["prediction"]),
        score=0.87,
        area_m2=1,
    )
    detection = DetectionRun.objects.create(
        detector=detector,
        training_run=run,
        status=RunStatus.SUCCEEDED,
        cells_total=1,
        cells_done=1,
        objects_count=len(DETECTED),
    )
    detection.images.add(image)
    for i, box in enumerate(DETECTED):
        DetectedObject.objects.create(
            detection_run=detection,
            image=image,
            detector_class=tree if i % 2 else shrub,
            geometry=s.lonlat(box),
            score=0.91,
            area_m2=1,
        )
    return detector, s, tree, shrub


def open_workspace(page, app_server, detector) -> None:
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    page.locator("[data-testid=map]:not([data-review='0']):not([data-review=''])").wait_for()


def entries(page) -> set[str]:
    return set((page.locator("[data-testid=legend]").get_attribute("data-entries") or "").split())


def wait_entries(page, expected: set[str]) -> None:
    page.wait_for_function(
        "want => { const legend = document.querySelector('[data-testid=legend]');"
        " const got = (legend.dataset.entries || '').split(' ').filter(Boolean);"
        " return got.length === want.length && want.every(w => got.includes(w)); }",
        arg=sorted(expected),
    )


def swatches(page) -> dict[str, list[int]]:
    """Each legend entry's swatch as RGBA bytes, as drawn."""
    return page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('[data-testid=legend-entry]')].map(e => {"
        " const c = e.querySelector('canvas');"
        " return [e.dataset.entry, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }))"
    )


def key_color(rgba: list[int]) -> tuple[int, int, int] | None:
    """The swatch's own colour: the most frequent of its most colourful opaque pixels (halos, white, black, greys
    and the pixels a stroke only partly covers, blended with its halo, are less colourful)."""
    pixels = [tuple(rgba[i : i + 3]) for i in range(0, len(rgba), 4) if rgba[i + 3] >= 250]
    chroma = {p: max(p) - min(p) for p in pixels}
    top = max(chroma.values(), default=0)
    if top < 40:
        return None
    counts: dict[tuple[int, int, int], int] = {}
    for p in pixels:
        if chroma[p] >= 0.85 * top:
            key = (p[0] // 8 * 8, p[1] // 8 * 8, p[2] // 8 * 8)
            counts[key] = counts.get(key, 0) + 1
    return max(counts, key=counts.get)


def hex_rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))


def near(a, b, tolerance: int = 24) -> bool:
    return all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def map_patch(page, s: Scene, box, half: int = 6) -> list[tuple[int, ...]]:
    """The screen's pixels around the centre of `box` (a user's view of that spot)."""
    x, y = map_pixel(page, *s.mercator_center(box))
    origin = page.locator("[data-testid=map]").bounding_box()
    clip = {"x": origin["x"] + x - half, "y": origin["y"] + y - half, "width": 2 * half, "height": 2 * half}
    picture = PILImage.open(io.BytesIO(page.screenshot(clip=clip))).convert("RGB")
    return [picture.getpixel((x, y)) for y in range(picture.height) for x in range(picture.width)]


def difference(a, b) -> float:
    return sum(abs(p - q) for pa, pb in zip(a, b, strict=True) for p, q in zip(pa, pb, strict=True)) / (3 * len(a))


def settle(page) -> None:
    """Every tile loaded, then drawn: two frames for the map to start what it draws (tiles fading in), then until
    OpenLayers says rendering is complete (data-rendering)."""
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.tilesPending === '0'")
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.rendering !== 'true'")


def test_the_legend_lists_what_is_shown_each_in_its_own_style_and_toggles_hide_layers(
    page, app_server, sign_in, personas, scene, screenshot
):
    detector, s, tree, shrub = scene
    sign_in(personas.member)
    open_workspace(page, app_server, detector)
    everything = {
        "area:training",
        "area:testing",
        "area:accuracy",
        f"outline:{tree.pk}",
        f"outline:{shrub.pk}",
        "ignored",
        "prediction",
        "review:match",
        "review:false_detection",
        "review:miss",
        "review:unoutlined",
        f"detection:{tree.pk}",
        f"detection:{shrub.pk}",
    }
    wait_entries(page, everything)
    legend = page.locator("[data-testid=legend]")
    assert legend.is_visible()
    labels = {e.get_attribute("data-entry"): e.inner_text() for e in legend.locator("[data-testid=legend-entry]").all()}
    assert "Outlined: tree" in labels[f"outline:{tree.pk}"] and "Detected: shrub" in labels[f"detection:{shrub.pk}"]
    assert "Missed object" in labels["review:miss"] and "False detection" in labels["review:false_detection"]
    assert "ignored" in labels["ignored"] and labels["area:training"].split()[-1] == "1"
    screenshot("15-map-legend-all-layers")

    # Every entry is drawn differently; the colours that carry a meaning are those of palette.ts and the classes'.
    drawn = swatches(page)
    names = sorted(drawn)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            changed = sum(abs(p - q) for p, q in zip(drawn[a], drawn[b], strict=True)) / len(drawn[a])
            assert changed > 4, f"{a} and {b} look the same in the legend"
    keys = {name: key_color(rgba) for name, rgba in drawn.items()}
    assert near(keys[f"outline:{tree.pk}"], hex_rgb(TREE)) and near(keys[f"detection:{tree.pk}"], hex_rgb(TREE))
    assert near(keys["area:training"], hex_rgb("#2F9E44")) and near(keys["area:accuracy"], hex_rgb("#AE3EC9"))
    assert near(keys["review:false_detection"], hex_rgb("#E64980")) and near(keys["review:miss"], hex_rgb("#15AABF"))
    meaningful = [
        "area:training",
        "area:testing",
        "area:accuracy",
        f"outline:{tree.pk}",
        f"outline:{shrub.pk}",
        "prediction",
        "review:false_detection",
        "review:miss",
    ]
    for i, a in enumerate(meaningful):
        for b in meaningful[i + 1 :]:
            assert not near(keys[a], keys[b], 40), f"{a} and {b} share a colour: {keys[a]}"

    # Toggles: a hidden layer leaves the map and the legend; shown again, it comes back.
    settle(page)
    before = map_patch(page, s, BOXES["false_detection"])
    page.uncheck("[data-testid=layer-review]")
    wait_entries(page, everything - {"review:match", "review:false_detection", "review:miss", "review:unoutlined"})
    settle(page)
    assert difference(before, map_patch(page, s, BOXES["false_detection"])) > 10
    page.check("[data-testid=layer-review]")
    wait_entries(page, everything)

    page.uncheck("[data-testid=layer-outlines]")
    wait_entries(page, everything - {f"outline:{tree.pk}", f"outline:{shrub.pk}", "ignored"})
    page.check("[data-testid=layer-outlines]")
    page.uncheck("[data-testid=layer-flagged]")
    wait_entries(page, everything - {"ignored"})
    page.check("[data-testid=layer-flagged]")
    page.uncheck("[data-testid=layer-testing]")
    page.uncheck("[data-testid=layer-predictions]")
    wait_entries(page, everything - {"area:testing", "prediction"})
    page.check("[data-testid=layer-testing]")
    page.check("[data-testid=layer-predictions]")

    # Detected objects: hidden and shown; their opacity follows the slider.
    settle(page)
    solid = map_patch(page, s, DETECTED[4])
    page.locator("[data-testid=detections-opacity]").fill("0.2")
    settle(page)
    faint = map_patch(page, s, DETECTED[4])
    page.uncheck("[data-testid=layer-detections]")
    wait_entries(page, everything - {f"detection:{tree.pk}", f"detection:{shrub.pk}"})
    settle(page)
    bare = map_patch(page, s, DETECTED[4])
    assert difference(solid, bare) > 3 * difference(faint, bare) and difference(solid, bare) > 10
    page.check("[data-testid=layer-detections]")
    wait_entries(page, everything)


def test_hover_and_click_say_what_an_object_is_and_zoom_to_it(page, app_server, sign_in, personas, scene, screenshot):
    detector, s, tree, shrub = scene
    sign_in(personas.member)
    open_workspace(page, app_server, detector)
    page.locator(f"[data-testid=legend-entry][data-entry='detection:{shrub.pk}']").wait_for()
    origin = page.locator("[data-testid=map]").bounding_box()

    def at(box) -> tuple[float, float]:
        x, y = map_pixel(page, *s.mercator_center(box))
        return origin["x"] + x, origin["y"] + y

    # Hover a prediction: its class, confidence and area.
    page.mouse.move(*at(BOXES["prediction"]))
    hover = page.locator("[data-testid=map-hover][data-kind=prediction]")
    hover.wait_for()
    assert "tree" in hover.inner_text() and "87%" in hover.inner_text()

    # Click a hand-drawn outline: its class and its area in m², as a geodesic measure gives it.
    page.mouse.click(*at(BOXES["shrub"]))
    card = page.locator("[data-testid=map-info][data-kind=outline]")
    card.wait_for()
    lon, lat = zip(*s.lonlat(BOXES["shrub"]).coords[0], strict=True)
    expected = abs(Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0])
    text = card.inner_text()
    shown = float(text.split("Area")[1].split("m²")[0].strip().replace(",", ""))
    assert "shrub" in text and "used for training" in text and shown == pytest.approx(expected, rel=0.02)

    # Click a detected object (vector tiles): class and confidence; "Zoom to" brings it close.
    page.keyboard.press("Escape")
    page.mouse.click(*at(DETECTED[1]))
    card = page.locator("[data-testid=map-info][data-kind=detection]")
    card.wait_for()
    assert "tree" in card.inner_text() and "91%" in card.inner_text() and "m²" in card.inner_text()
    screenshot("16-map-object-info")
    before = float(page.locator("[data-testid=map]").get_attribute("data-view-resolution"))
    page.click("[data-testid=map-info-zoom]")
    page.wait_for_function(f"() => +document.querySelector('[data-testid=map]').dataset.viewResolution < {before / 2}")
    page.wait_for_function(
        CENTERED_ON,
        arg=list(s.mercator_center(DETECTED[1])),
    )

    # The review states say what they are.
    page.click("[data-testid=fit-image]")
    page.wait_for_function(
        f"() => +document.querySelector('[data-testid=map]').dataset.viewResolution > {before * 0.9}"
    )
    page.mouse.move(*at(BOXES["miss"]))
    page.locator("[data-testid=map-hover][data-kind=review]").wait_for()
    assert "Missed object" in page.locator("[data-testid=map-hover]").inner_text()

    # Drawing tools take the clicks: no card opens while an outline is being drawn.
    page.click("[data-testid=map-info-close]")
    assert not page.locator("[data-testid=map-info]").is_visible()
    page.keyboard.press("r")
    page.mouse.click(*at(BOXES["prediction"]))
    assert not page.locator("[data-testid=map-info]").is_visible()
    page.keyboard.press("Escape")


def test_fit_to_each_area_a_readable_scale_bar_and_reserved_colours_flagged(
    page, app_server, sign_in, personas, scene, screenshot
):
    detector, s, _, _ = scene
    sign_in(personas.member)
    open_workspace(page, app_server, detector)
    map_el = page.locator("[data-testid=map]")
    whole = float(map_el.get_attribute("data-view-resolution"))
    for kind in ("testing", "accuracy", "training"):
        page.click(f"[data-testid=legend-entry][data-entry='area:{kind}']")
        x, y = s.mercator_center(BOXES[kind])
        page.wait_for_function(
            CENTERED_ON,
            arg=[x, y],
        )
        page.wait_for_function(
            f"() => +document.querySelector('[data-testid=map]').dataset.viewResolution < {whole * 0.7}"
        )
        # The whole area is in view.
        x0, y0, x1, y1 = s.lonlat(BOXES[kind]).extent
        for lon, lat in ((x0, y0), (x1, y1)):
            px, py = map_pixel(
                page, EARTH * math.radians(lon), EARTH * math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))
            )
            box = map_el.bounding_box()
            assert 0 <= px <= box["width"] and 0 <= py <= box["height"]

    bar = page.locator(".ol-scale-bar")
    assert bar.is_visible()
    steps = [t for t in page.locator(".ol-scale-step-text").all_inner_texts() if t.strip()]
    assert len(steps) >= 3 and steps[0].strip() == "0" and steps[-1].strip().endswith("m")
    bar_box, map_box = bar.bounding_box(), map_el.bounding_box()
    assert bar_box["width"] >= 100 and bar_box["y"] + bar_box["height"] <= map_box["y"] + map_box["height"]
    # Dark text on a light panel: readable on any imagery.
    color, background = bar.evaluate(
        "e => [getComputedStyle(e.querySelector('.ol-scale-step-text')).color, getComputedStyle(e).backgroundColor]"
    )
    assert color == "rgb(27, 36, 48)" and background.startswith("rgba(255, 255, 255")
    screenshot("17-map-fit-to-area")

    # A class given a colour the map reserves (the old palette's purple is the accuracy areas') is flagged.
    assert page.locator("[data-testid=color-warn]").count() == 0
    DetectorClass.objects.filter(detector=detector, name="shrub").update(color="#AE3EC9")
    page.reload()
    warning = page.locator("[data-testid=class-item]", has_text="shrub").locator("[data-testid=color-warn]")
    warning.wait_for()
    assert "accuracy areas" in warning.get_attribute("title")
    assert page.locator("[data-testid=color-warn]").count() == 1


def test_detector_cards_show_status_version_and_score(page, app_server, sign_in, personas, project, scene, screenshot):
    detector, _, _, _ = scene
    Detector.objects.create(organization=personas.organization, project=project, name="Roofs")
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/projects/{project.pk}")
    cards = page.locator("[data-testid=detector-card]")
    cards.first.wait_for()
    trained = cards.filter(has_text="Orchard trees")
    assert trained.locator("[data-testid=detector-status]").inner_text() == "Trained"
    assert trained.locator("[data-testid=detector-version]").inner_text() == "Version 1"
    assert trained.locator("[data-testid=detector-score]").inner_text() == "F-score 72%"
    fresh = cards.filter(has_text="Roofs")
    assert fresh.locator("[data-testid=detector-status]").inner_text() == "Not trained yet"
    assert fresh.locator("[data-testid=detector-score]").count() == 0
    TrainingRun.objects.create(detector=detector, version=2, status=RunStatus.FAILED, error="stopped")
    page.reload()
    trained = page.locator("[data-testid=detector-card]").filter(has_text="Orchard trees")
    trained.locator("[data-testid=detector-status]").wait_for()
    assert trained.locator("[data-testid=detector-status]").inner_text() == "Last training failed"
    assert trained.locator("[data-testid=detector-version]").inner_text() == "Version 1"
    screenshot("18-detector-cards")


HALF_WORLD = 20037508.342789244


def tile_seam_ratios(page) -> list[float]:
    """How much sharper the picture changes across each tile edge in view than just beside it (1: no seam).

    The map shows only the imagery, scaled between tile levels; for every tile edge crossing the middle of the
    map, the mean brightness jump between the two pixel columns (rows) at the edge is set against the jumps of
    the columns (rows) a few pixels to either side."""
    map_el = page.locator("[data-testid=map]")
    box = map_el.bounding_box()
    picture = PILImage.open(io.BytesIO(page.screenshot(clip=box))).convert("L")
    width, height = picture.size
    pixels = [[picture.getpixel((x, y)) for x in range(width)] for y in range(height)]
    max_zoom = page.evaluate(
        "async id => (await (await fetch(`/api/v1/images/${id}/tilejson.json`)).json()).maxzoom",
        map_el.get_attribute("data-image-id"),
    )
    resolution = float(map_el.get_attribute("data-view-resolution"))
    z = min(max_zoom, round(math.log2(2 * HALF_WORLD / 256 / resolution)))
    size = 2 * HALF_WORLD / 2**z
    cx, cy = (float(v) for v in map_el.get_attribute("data-view-center").split(","))
    # Away from the legend (left), the toolbar (top) and the controls (right).
    x_range, y_range = (300, width - 80), (90, height - 90)
    ratios = []
    for k in range(
        math.floor((cx - width * resolution + HALF_WORLD) / size),
        math.ceil((cx + width * resolution + HALF_WORLD) / size),
    ):
        edge = round(map_pixel(page, -HALF_WORLD + k * size, cy)[0])
        if x_range[0] + 12 <= edge <= x_range[1] - 12:
            jump = [
                sum(abs(row[x] - row[x - 1]) for row in pixels[y_range[0] : y_range[1]]) / (y_range[1] - y_range[0])
                for x in range(edge - 11, edge + 12)
            ]
            ratios.append(max(jump[10:13]) / (sorted(jump[:6] + jump[-6:])[6] or 1))
    for k in range(
        math.floor((HALF_WORLD - cy - height * resolution) / size),
        math.ceil((HALF_WORLD - cy + height * resolution) / size),
    ):
        edge = round(map_pixel(page, cx, HALF_WORLD - k * size)[1])
        if y_range[0] + 12 <= edge <= y_range[1] - 12:
            columns = range(x_range[0], x_range[1])
            jump = [
                sum(abs(pixels[y][x] - pixels[y - 1][x]) for x in columns) / len(columns)
                for y in range(edge - 11, edge + 12)
            ]
            ratios.append(max(jump[10:13]) / (sorted(jump[:6] + jump[-6:])[6] or 1))
    return ratios


def test_image_tiles_meet_without_seams_at_any_zoom(page, app_server, sign_in, personas, scene):
    """The tiles come with a 1-pixel gutter of their neighbours' pixels (TileJSON `buffer`), which the map crops:
    scaled tiles are smoothed across their edges. Served without it (the control), the edges show."""
    detector, s, _, _ = scene
    sign_in(personas.member)

    def measure() -> list[float]:
        open_workspace(page, app_server, detector)
        page.click("[data-testid=legend-entry][data-entry='area:training']")
        page.wait_for_function(CENTERED_ON, arg=list(s.mercator_center(BOXES["training"])))
        for layer in ("training", "testing", "accuracy", "outlines", "predictions", "review", "detections"):
            page.uncheck(f"[data-testid=layer-{layer}]")
        settle(page)  # the tiles' fade-in (150 ms) included
        return tile_seam_ratios(page)

    with_gutter = measure()
    assert with_gutter and max(with_gutter) < 1.6, with_gutter
    page.route(
        "**/tilejson.json*", lambda route: route.continue_(url=route.request.url.replace("buffer=1", "buffer=0"))
    )
    without = measure()
    assert without and max(without) > 2, without
    print("seam ratios with gutter", [round(r, 2) for r in with_gutter], "without", [round(r, 2) for r in without])
