"""Where whole-image detection runs: a grid of independent cells over the part of the image that matters.

Cells do not overlap; each is read with a margin instead (`padded`), and an object belongs to the one
cell that holds its representative point. With a margin at least as large as the largest object, every
object is seen whole by its owning cell and reported exactly once across the grid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import shapely
from affine import Affine
from rasterio.windows import Window
from shapely import LineString, STRtree, union_all
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.prepared import prep

from .raster_io import geometry_to_pixels


@dataclass(frozen=True)
class GridCell:
    """A cell of the grid, in pixels of its image."""

    row: int
    col: int
    window: Window

    @property
    def key(self) -> str:
        return f"r{self.row}c{self.col}"

    def padded(self, margin: int, width: int, height: int) -> Window:
        """The cell grown by ``margin`` pixels on every side, clipped to the image."""
        col0 = max(0, int(self.window.col_off) - margin)
        row0 = max(0, int(self.window.row_off) - margin)
        col1 = min(width, int(self.window.col_off + self.window.width) + margin)
        row1 = min(height, int(self.window.row_off + self.window.height) + margin)
        return Window(col0, row0, col1 - col0, row1 - row0)


def _key_position(key: str) -> tuple[int, int]:
    match = re.fullmatch(r"r(\d+)c(\d+)", key)
    if match is None:
        raise ValueError(f"not a grid cell key: {key!r}")
    return int(match[1]), int(match[2])


def neighbour_keys(key: str, reach: int = 1) -> list[str]:
    """The keys of the cells up to ``reach`` rows and columns from the cell ``key`` (``GridCell.key``), itself
    included; keys off the grid are listed too (no cell has them)."""
    row, col = _key_position(key)
    return [f"r{r}c{c}" for r in range(max(0, row - reach), row + reach + 1)
            for c in range(max(0, col - reach), col + reach + 1)]


def cells_reaching(key: str, window: Sequence[int], margin: int) -> int:
    """How many cells away from the cell ``key`` (its ``window``: [col, row, width, height]) a border strip
    (``cell_border_strips``: ``margin`` + 2 pixels each side of a border) can meet an object the cell owns. Such
    an object lies within ``margin`` of the cell, so the borders of the cells next to it can, and those of cells
    further away only when the grid's cells are smaller than about twice the margin."""
    row, col = _key_position(key)
    # the grid's cell size: from the cell's offset (edge cells are cut short), else its own longer side
    side = int(window[0]) // col if col else int(window[1]) // row if row else max(int(window[2]), int(window[3]))
    return 1 + (2 * margin + 2) // max(1, side)


def plan_grid_cells(
    width: int,
    height: int,
    cell_size: int,
    region: BaseGeometry | None = None,
    transform: Affine | None = None,
) -> list[GridCell]:
    """Cells of ``cell_size`` pixels covering the image, skipping those outside ``region`` (image CRS)."""
    if cell_size < 1:
        raise ValueError("cell_size must be positive")
    region_px = None
    if region is not None:
        if transform is None:
            raise ValueError("a region needs the image transform to be placed in pixels")
        region_px = prep(geometry_to_pixels(region, transform))
    cells = []
    for row, row_off in enumerate(range(0, height, cell_size)):
        for col, col_off in enumerate(range(0, width, cell_size)):
            w, h = min(cell_size, width - col_off), min(cell_size, height - row_off)
            if region_px is not None and not region_px.intersects(box(col_off, row_off, col_off + w, row_off + h)):
                continue
            cells.append(GridCell(row, col, Window(col_off, row_off, w, h)))
    return cells


def merge_across_cells(
    polygons: list[BaseGeometry], cells: list[str], classes: list[str], min_overlap: float = 0.2
) -> list[list[int]]:
    """Groups of indices that are one real object seen by several cells.

    Two objects of the same class from different cells are the same object when their intersection
    covers at least ``min_overlap`` of the smaller one (a border object split differently by each cell's
    view). Groups are closed transitively (an object on a corner can be seen by four cells).
    """
    if not polygons:  # no object near any border (STRtree.query refuses an empty list)
        return []
    tree = STRtree(polygons)
    parent = list(range(len(polygons)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    left, right = tree.query(polygons, predicate="intersects")
    for i, j in zip(left.tolist(), right.tolist(), strict=True):
        if i >= j or cells[i] == cells[j] or classes[i] != classes[j]:
            continue
        a, b = polygons[i], polygons[j]
        if a.intersection(b).area >= min_overlap * min(a.area, b.area):
            parent[find(i)] = find(j)
    groups: dict[int, list[int]] = {}
    for i in range(len(polygons)):
        groups.setdefault(find(i), []).append(i)
    return [sorted(g) for g in groups.values() if len(g) > 1]


def merged_shape(pieces: Sequence[BaseGeometry]) -> Polygon:
    """One polygon for the pieces of one object seen by several cells (``merge_across_cells``): their
    union, or its largest part if the pieces only touch at a point."""
    union = union_all(list(pieces))
    if union.geom_type != "Polygon":
        union = max(getattr(union, "geoms", [union]), key=lambda g: g.area)
    return union


def cell_border_strips(windows: Sequence[Window], margin: int, width: int, height: int) -> BaseGeometry | None:
    """Strips (pixels) along the borders between cells, ``margin`` + 2 pixels wide each side; None for one cell.

    Only objects there can have been seen by two cells: an object owned by one cell that overlaps one
    owned by its neighbour lies within the largest object's size (<= the margin) of their shared border.
    Merging only these keeps the merge proportional to the border length, not to the number of objects.
    """
    lines = []
    for w in windows:
        col, row, cw, ch = int(w.col_off), int(w.row_off), int(w.width), int(w.height)
        if col + cw < width:
            lines.append(LineString([(col + cw, row), (col + cw, row + ch)]))
        if row + ch < height:
            lines.append(LineString([(col, row + ch), (col + cw, row + ch)]))
    if not lines:
        return None
    return union_all([shapely.buffer(line, margin + 2) for line in lines])
