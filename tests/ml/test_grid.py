"""Grid planning and the border merge, on hand-made geometry with known answers."""

from __future__ import annotations

from affine import Affine
from rasterio.windows import Window
from shapely.geometry import Point, box

from workers.ml.grid import cell_border_strips, merge_across_cells, merged_shape, plan_grid_cells


def test_cells_cover_the_image_once_and_skip_what_is_outside_the_region():
    cells = plan_grid_cells(1000, 700, 256)
    assert len(cells) == 4 * 3
    assert sum(c.window.width * c.window.height for c in cells) == 1000 * 700
    assert {c.key for c in cells} >= {"r0c0", "r2c3"}
    transform = Affine(0.5, 0, 1000, 0, -0.5, 2000)  # 0.5 m pixels
    region = box(1000, 2000 - 100, 1100, 2000)  # top-left 200 x 200 pixels
    assert [c.key for c in plan_grid_cells(1000, 700, 256, region, transform)] == ["r0c0"]


def test_padded_window_stays_inside_the_image():
    corner = plan_grid_cells(600, 600, 256)[-1]
    padded = corner.padded(64, 600, 600)
    assert (padded.col_off, padded.row_off) == (512 - 64, 512 - 64)
    assert padded.col_off + padded.width == 600 and padded.row_off + padded.height == 600


def test_an_object_seen_in_parts_by_four_cells_becomes_one():
    crown = Point(100, 100).buffer(10)
    # Each cell keeps its quarter plus a few pixels of its neighbours' (where its view was cut).
    parts = [crown.intersection(box(x0 - 5, y0 - 5, x0 + 105, y0 + 105)) for x0 in (0, 100) for y0 in (0, 100)]
    neighbour = Point(130, 100).buffer(5)  # a different object close by, in another cell
    other_class = Point(100, 100).buffer(9)  # same place, other class: never merged
    polygons = parts + [neighbour, other_class]
    cells = ["r0c0", "r1c0", "r0c1", "r1c1", "r1c1", "r0c0"]
    classes = ["tree"] * 5 + ["bush"]
    assert merge_across_cells(polygons, cells, classes) == [[0, 1, 2, 3]]


def test_objects_of_the_same_cell_are_never_merged():
    a, b = Point(0, 0).buffer(10), Point(5, 0).buffer(10)
    assert merge_across_cells([a, b], ["r0c0", "r0c0"], ["tree", "tree"]) == []
    assert merge_across_cells([a, b], ["r0c0", "r0c1"], ["tree", "tree"]) == [[0, 1]]
    assert merge_across_cells([], [], []) == []  # no object near a border: the run's finish must not fail


def test_border_strips_follow_the_inner_borders_only():
    """Four 100 px cells of a 200 px image: strips along x=100 and y=100, margin + 2 px each side; the image's
    outer edges have no neighbour, so nothing there."""
    windows = [c.window for c in plan_grid_cells(200, 200, 100)]
    strips = cell_border_strips(windows, margin=8, width=200, height=200)
    assert strips.contains(Point(100, 30)) and strips.contains(Point(170, 109))
    assert not strips.intersects(Point(100 + 11, 30)) and not strips.intersects(Point(30, 30))
    assert not strips.intersects(Point(199, 30))  # the image's own edge is no border between cells
    assert cell_border_strips([Window(0, 0, 200, 200)], margin=8, width=200, height=200) is None


def test_merged_shape_is_the_union_or_its_largest_part():
    assert merged_shape([box(0, 0, 10, 10), box(8, 0, 20, 10)]).equals(box(0, 0, 20, 10))
    # pieces touching at a corner only: the union is two polygons, the larger one stands for the object
    shape = merged_shape([box(0, 0, 10, 10), box(10, 10, 14, 14)])
    assert shape.geom_type == "Polygon" and shape.equals(box(0, 0, 10, 10))
