"""The detector workspace: real mouse drawing on the map, saved as the user draws; undo/redo, vertex editing,
outlines outside areas flagged, the shortcuts overlay, and a reload that keeps everything."""

from __future__ import annotations

import pytest
from django.contrib.gis.geos import GEOSGeometry

from detectors.models import Annotation, Area, Detector, DetectorClass, DetectorImage
from tests.browser.conftest import map_pixel
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def detector(personas, project, ready_sample_image):
    detector = Detector.objects.create(
        organization=personas.organization, project=project, name="Olive trees", created_by=personas.owner
    )
    DetectorClass.objects.create(detector=detector, name="tree", color="#E8590C", position=0)
    DetectorClass.objects.create(detector=detector, name="shrub", color="#AE3EC9", position=1)
    DetectorImage.objects.create(detector=detector, image=ready_sample_image)
    return detector


def counts(detector) -> tuple[int, int]:
    return Area.objects.filter(detector=detector).count(), Annotation.objects.filter(detector=detector).count()


def shown(page) -> tuple[int, int]:
    """How many areas and outlines the map shows (its data-areas and data-outlines)."""
    areas, outlines = page.locator("[data-testid=map]").evaluate("e => [e.dataset.areas, e.dataset.outlines]")
    return int(areas), int(outlines)


def class_counts(page) -> dict[str, int]:
    """The outlines of each kind of object on the open image, as the side panel lists them."""
    items = page.locator("[data-testid=class-item]").all()
    return {item.locator(".class-name").inner_text(): int(item.locator(".count").inner_text()) for item in items}


def saved_class_counts(detector) -> dict[str, int]:
    return {c.name: Annotation.objects.filter(detector_class=c).count() for c in detector.classes.all()}


def test_draw_areas_and_outlines_undo_redo_edit_vertices_and_reload(
    page, app_server, sign_in, personas, detector, screenshot
):
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    box = page.locator("[data-testid=map]").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + 20
    mouse = page.mouse

    def click(dx: float, dy: float) -> None:
        mouse.click(cx + dx, cy + dy)

    def wait_counts(areas: int, outlines: int) -> None:
        wait_for(lambda: counts(detector) == (areas, outlines), timeout=15)
        page.locator("[data-testid=save-status][data-state=saved]").wait_for()

    # A training area (rectangle: two clicks), then outlines inside it: rectangle, polygon and circle.
    page.keyboard.press("t")
    click(-260, -230)
    click(40, 60)
    wait_counts(1, 0)
    assert Area.objects.get().kind == "training"

    page.keyboard.press("r")
    click(-220, -190)
    click(-170, -140)
    wait_counts(1, 1)

    page.keyboard.press("p")
    for dx, dy in [(-110, -190), (-60, -185), (-70, -120), (-115, -130)]:
        click(dx, dy)
    click(-110, -190)  # back on the first point: finishes the polygon
    wait_counts(1, 2)

    page.keyboard.press("c")
    click(-150, -20)
    click(-125, -20)
    wait_counts(1, 3)
    circle = Annotation.objects.order_by("-created_at").first()
    assert len(circle.geometry.coords[0]) > 30  # a circle is saved as a many-sided polygon

    # An accuracy area elsewhere, with one outline in it.
    page.keyboard.press("a")
    click(100, 80)
    click(260, 230)
    wait_counts(2, 3)
    page.keyboard.press("2")  # second class: shrub
    page.keyboard.press("r")
    click(150, 130)
    click(190, 170)
    wait_counts(2, 4)
    assert Annotation.objects.order_by("-created_at").first().detector_class.name == "shrub"
    page.keyboard.press("1")

    # An outline outside every area is flagged; undo removes it, redo brings it back, undo again.
    page.keyboard.press("r")
    click(150, -200)
    click(190, -160)
    wait_counts(2, 5)
    page.locator("[data-testid=map][data-flagged='1']").wait_for()
    page.locator("[data-testid=warning-flagged]").wait_for()
    page.keyboard.press("Control+z")
    wait_counts(2, 4)
    page.locator("[data-testid=map][data-flagged='0']").wait_for()
    # The undo has reached the server; wait until the app has also filed it for redo.
    page.locator("[data-testid=redo]:not([disabled])").wait_for()
    page.keyboard.press("Control+Shift+z")
    wait_counts(2, 5)
    page.locator("[data-testid=map][data-flagged='1']").wait_for()
    screenshot("07-workspace-flagged")
    page.click("[data-testid=undo]")
    wait_counts(2, 4)
    page.locator("[data-testid=map][data-flagged='0']").wait_for()
    assert page.locator("[data-step=accuracy-area][data-done=true]").count() == 1
    assert page.locator("[data-step=outlines][data-done=true]").count() == 1

    # Vertex editing: select the rectangle outline, drag its corner; undo puts it back.
    page.keyboard.press("Escape")
    page.keyboard.press("v")
    rectangle = Annotation.objects.order_by("created_at").first()
    original = GEOSGeometry(rectangle.geometry.wkt)
    click(-195, -165)
    page.locator("[data-testid=delete]:not([disabled])").wait_for()
    mouse.move(cx - 170, cy - 140)
    mouse.down()
    for step in range(1, 6):
        mouse.move(cx - 170 + 6 * step, cy - 140 + 5 * step)
    mouse.up()
    wait_for(lambda: Annotation.objects.get(pk=rectangle.pk).geometry.area > original.area * 1.3, timeout=15)
    moved = Annotation.objects.get(pk=rectangle.pk).geometry
    assert moved.extent[0] == pytest.approx(original.extent[0]) and moved.extent[2] > original.extent[2]
    page.keyboard.press("Control+z")
    wait_for(lambda: Annotation.objects.get(pk=rectangle.pk).geometry.equals_exact(original, 1e-9), timeout=15)
    # The undo has reached the server; wait until the app has also filed it for redo.
    page.locator("[data-testid=redo]:not([disabled])").wait_for()
    page.keyboard.press("Control+Shift+z")
    wait_for(lambda: Annotation.objects.get(pk=rectangle.pk).geometry.area > original.area * 1.3, timeout=15)
    page.keyboard.press("Escape")
    page.locator("[data-testid=save-status][data-state=saved]").wait_for()
    screenshot("06-workspace-drawn")

    # The shortcuts overlay.
    page.keyboard.press("?")
    page.locator("[data-testid=help]").wait_for()
    screenshot("08-shortcuts")
    page.keyboard.press("Escape")
    page.locator("[data-testid=help]").wait_for(state="detached")

    # Reload: everything comes back from the server, as saved.
    page.reload()
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    assert shown(page) == (2, 4) and counts(detector) == (2, 4)
    assert sorted(Area.objects.values_list("kind", flat=True)) == ["accuracy", "training"]
    assert class_counts(page) == saved_class_counts(detector) == {"tree": 3, "shrub": 1}
    assert page.locator("[data-testid=map][data-flagged='0']").count() == 1


def test_a_shape_the_server_refuses_shows_its_message(page, app_server, sign_in, personas, detector):
    """Drawn entirely off the image: the API answers 400 with a plain-words detail, shown as a toast."""
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    box = page.locator("[data-testid=map]").bounding_box()
    page.mouse.wheel(0, 600)  # zoom out so there is room beside the image
    page.wait_for_timeout(400)
    page.keyboard.press("t")
    x, y = box["x"] + 40, box["y"] + 120  # top left: the legend sits bottom left
    page.mouse.click(x, y - 40)
    page.mouse.click(x + 40, y)
    toast = page.locator(".toast-error")
    toast.wait_for()
    assert "outside the image" in toast.inner_text()
    assert counts(detector) == (0, 0)
    page.locator("[data-testid=map][data-areas='0'][data-outlines='0']").wait_for()


def test_two_tabs_never_overwrite_each_other_and_a_returning_tab_catches_up(
    page, app_server, sign_in, personas, detector, ready_sample_image
):
    """Tab A reshapes an outline; tab B, still showing the old one, reshapes it too: B's edit is refused, B shows
    A's version and says so. A draws another outline; B catches up when the user comes back to it."""
    from django.contrib.gis.geos import Polygon as GEOSPolygon
    from pyproj import Transformer

    image = ready_sample_image
    west, south, east, north = image.footprint.extent
    cx, cy, d = (west + east) / 2, (south + north) / 2, (east - west) / 20
    Area.objects.create(
        detector=detector, image=image, kind="training",
        geometry=GEOSPolygon.from_bbox((cx - 4 * d, cy - 4 * d, cx + 4 * d, cy + 4 * d)),
    )  # fmt: skip
    outline = Annotation.objects.create(
        detector=detector, image=image, detector_class=detector.classes.first(),
        geometry=GEOSPolygon.from_bbox((cx - d, cy - d, cx + d, cy + d)),
    )  # fmt: skip
    sign_in(personas.member)
    url = f"{app_server.url}/app/detectors/{detector.pk}"
    tab_a, tab_b = page, page.context.new_page()
    to_map = Transformer.from_crs("EPSG:4326", "EPSG:3857", always_xy=True)

    def screen(tab, lon: float, lat: float) -> tuple[float, float]:
        frame = tab.locator("[data-testid=map]").bounding_box()
        px, py = map_pixel(tab, *to_map.transform(lon, lat))
        return frame["x"] + px, frame["y"] + py

    def drag_corner(tab, to: tuple[float, float], corner: tuple[float, float] = (cx + d, cy + d)) -> None:
        tab.keyboard.press("v")
        tab.mouse.click(*screen(tab, cx, cy))  # select the outline
        tab.locator("[data-testid=delete]:not([disabled])").wait_for()
        x, y = screen(tab, *corner)
        tx, ty = screen(tab, *to)
        tab.mouse.move(x, y)
        tab.mouse.down()
        for step in range(1, 7):
            tab.mouse.move(x + (tx - x) * step / 6, y + (ty - y) * step / 6)
        tab.mouse.up()

    for tab in (tab_a, tab_b):
        tab.goto(url)
        tab.locator("[data-testid=map][data-ready=true]").wait_for()

    tab_a.bring_to_front()
    drag_corner(tab_a, (cx + 2 * d, cy + 2 * d))
    wait_for(lambda: Annotation.objects.get(pk=outline.pk).geometry.extent[2] > cx + 1.5 * d, timeout=15)
    by_a = Annotation.objects.get(pk=outline.pk).geometry

    tab_b.bring_to_front()
    drag_corner(tab_b, (cx + 3 * d, cy + 1.2 * d))
    tab_b.locator(".toast", has_text="changed or deleted in another tab").wait_for()
    tab_b.locator("[data-testid=save-status][data-state=saved]").wait_for()
    assert Annotation.objects.get(pk=outline.pk).geometry.equals_exact(by_a, 1e-9)  # A's edit stands
    # B now shows A's version: its corner is where A left it, and dragging it from there saves (no conflict).
    drag_corner(tab_b, (cx + 2.5 * d, cy + 2.5 * d), corner=(cx + 2 * d, cy + 2 * d))
    wait_for(lambda: Annotation.objects.get(pk=outline.pk).geometry.extent[2] > cx + 2.3 * d, timeout=15)
    tab_b.locator("[data-testid=save-status][data-state=saved]").wait_for()
    assert Annotation.objects.get(pk=outline.pk).geometry.extent[:2] == pytest.approx(by_a.extent[:2], abs=1e-8)

    # A draws a second outline; B takes it when the user returns to B.
    tab_a.bring_to_front()
    tab_a.keyboard.press("r")
    tab_a.mouse.click(*screen(tab_a, cx - 3 * d, cy + 3 * d))
    tab_a.mouse.click(*screen(tab_a, cx - 2 * d, cy + 2 * d))
    wait_for(lambda: Annotation.objects.count() == 2, timeout=15)
    refreshed = tab_b.locator("[data-testid=map]").get_attribute("data-refreshed") or "0"
    tab_b.bring_to_front()
    tab_b.evaluate("() => window.dispatchEvent(new Event('focus'))")  # what the browser sends on return to the tab
    tab_b.wait_for_function(
        f"() => +(document.querySelector('[data-testid=map]').dataset.refreshed || 0) > {refreshed}"
    )
    tab_b.locator("[data-testid=map][data-outlines='2']").wait_for()
    assert shown(tab_b) == (1, 2)
    assert class_counts(tab_b) == saved_class_counts(detector)
    tab_b.close()


RESOLUTION = "+document.querySelector('[data-testid=map]').dataset.viewResolution"


def test_fit_to_image_brings_the_whole_image_back_and_keeps_undo(
    page, app_server, sign_in, personas, detector, screenshot
):
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/detectors/{detector.pk}")
    map_el = page.locator("[data-testid=map][data-ready=true]")
    map_el.wait_for()
    fitted = float(map_el.get_attribute("data-view-resolution"))
    box = map_el.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2 + 20

    page.keyboard.press("t")
    page.mouse.click(cx - 200, cy - 150)
    page.mouse.click(cx + 40, cy + 60)
    wait_for(lambda: counts(detector) == (1, 0), timeout=15)
    page.locator("[data-testid=undo]:not([disabled])").wait_for()
    page.keyboard.press("Escape")

    def zoom_in() -> None:
        page.mouse.move(cx + 120, cy + 120)
        for _ in range(5):
            page.mouse.wheel(0, -400)
            page.wait_for_timeout(150)
        page.wait_for_function(f"() => {RESOLUTION} < {fitted / 4}")

    def back_to_whole_image() -> None:
        page.wait_for_function(f"() => Math.abs({RESOLUTION} - {fitted}) < {fitted * 0.01}")

    zoom_in()
    page.click("[data-testid=fit-image]")
    back_to_whole_image()
    # Clicking the open image in the side panel does the same, instead of opening it again.
    zoom_in()
    page.click("[data-testid=ws-image]")
    back_to_whole_image()
    screenshot("08-workspace-fit-to-image")

    assert counts(detector) == (1, 0) and shown(page) == (1, 0)
    page.click("[data-testid=undo]:not([disabled])")  # undo still holds the area drawn before
    wait_for(lambda: counts(detector) == (0, 0), timeout=15)
    assert shown(page) == (0, 0)
