"""Outlines of labelled regions, traced along pixel edges with array operations.

What ``rasterio.features.shapes(labels, connectivity=4)`` draws, ring for ring and vertex for vertex (the same
start vertex, direction and holes; a region touching itself at a corner is an outer ring and a hole meeting
there), without building a GeoJSON mapping of Python tuples per vertex: that conversion was about half of the
detection's polygon step (issue #17). Each region's boundary is the set of pixel edges between it and any other
value; every edge is directed so that its region lies on its left, and each ring is the cycle these directed
edges form. At a corner where a region's pixels meet only diagonally the ring turns towards the pixel it is
following, so regions are 4-connected, as ``connectivity=4`` groups them.

Coordinates are pixel corners: x right, y down, (0, 0) the top left of the first pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

# directions of travel along a pixel edge, in the order a clockwise turn on the screen takes them
_E, _S, _W, _N = 0, 1, 2, 3


@dataclass(frozen=True)
class Rings:
    """Every ring of every region: ``xy`` holds the rings' corner vertices one ring after the other (not
    closed), ``counts`` how many each has. A region's outer rings run counter-clockwise on the screen and start
    at their top-left corner going down; its holes run clockwise and start at their top-left corner going
    right. Rings are in the order of their first vertex, row by row."""

    xy: np.ndarray  # (n_vertices, 2) float64
    counts: np.ndarray  # (n_rings,) vertices per ring
    label: np.ndarray  # (n_rings,) the region's value
    hole: np.ndarray  # (n_rings,) bool

    @property
    def starts(self) -> np.ndarray:
        return _starts(self.counts)

    def areas(self) -> np.ndarray:
        """Each ring's enclosed area in pixels (shoelace; exact for pixel edges)."""
        if not self.counts.size:
            return np.zeros(0)
        x, y = self.xy[:, 0], self.xy[:, 1]
        ring = np.repeat(np.arange(self.counts.size), self.counts)
        after = np.arange(x.size) + 1
        ends = np.cumsum(self.counts)
        after[ends - 1] = ends - self.counts  # the vertex after a ring's last is its first
        cross = x * y[after] - x[after] * y
        return np.abs(np.bincount(ring, weights=cross, minlength=self.counts.size)) / 2


def trace_rings(labels: np.ndarray) -> Rings:
    """The rings of every region of non-zero ``labels`` (2-D integers; 0 is not traced)."""
    h, w = labels.shape
    w1 = w + 1
    padded = np.zeros((h + 2, w + 2), labels.dtype)
    padded[1:-1, 1:-1] = labels
    # out[y, x, d]: an edge leaves corner (x, y) in direction d with its region on the left
    out = np.zeros((h + 1, w + 1, 4), bool)
    above, below = padded[: h + 1, 1 : w + 1], padded[1:, 1 : w + 1]
    differ = above != below
    np.logical_and(differ, above != 0, out=out[:, :w, _E])
    np.logical_and(differ, below != 0, out=out[:, 1:, _W])
    left, right = padded[1 : h + 1, : w + 1], padded[1 : h + 1, 1:]
    differ = left != right
    np.logical_and(differ, right != 0, out=out[:h, :, _S])
    np.logical_and(differ, left != 0, out=out[1:, :, _N])
    flat = out.reshape(-1)
    keys = np.flatnonzero(flat)  # corner * 4 + direction, in raster order of the corners
    n = keys.size
    if n == 0:
        return Rings(np.zeros((0, 2)), np.zeros(0, np.intp), np.zeros(0, labels.dtype), np.zeros(0, bool))
    edge = np.arange(n)
    index = np.empty(flat.size, np.int32)  # key -> edge (only the keys that exist are ever read)
    index[keys] = edge
    d = keys & 3
    end = keys - d + np.array([4, 4 * w1, -4, -4 * w1])[d]  # the corner the edge arrives at, times 4
    # the next edge turns towards the region (left), else goes straight, else turns right: exactly one of
    # these leaves the corner with the same region on its left, the first that exists
    turn_left, turn_right = (d + 3) & 3, (d + 1) & 3
    nd = np.where(flat[end + turn_left], turn_left, np.where(flat[end + d], d, turn_right))
    nxt = index[end + nd].astype(np.intp)
    ring = _cycle_minimum(nxt, edge)
    # where a region's diagonal pixels belong to one outline, the outline touches itself at that corner; like
    # GDAL, draw it as two rings meeting there (e.g. an outer ring and a hole): swap the two edges' successors
    pair = np.flatnonzero(d < 2)
    pair = pair[flat[keys[pair] + 2]]  # both E and W, or both S and N, leave this corner
    if pair.size:
        other = index[keys[pair] + 2].astype(np.intp)
        same = ring[pair] == ring[other]
        pair, other = pair[same], other[same]
    if pair.size:
        before = np.empty(n, np.intp)
        before[nxt] = edge
        nxt[before[pair]], nxt[before[other]] = other, pair
        # only the rings split need their cycles found again
        split = np.zeros(n, bool)
        split[ring[pair]] = True
        redo = np.flatnonzero(split[ring])
        local = np.empty(n, np.intp)
        local[redo] = np.arange(redo.size)
        ring[redo] = redo[_cycle_minimum(local[nxt[redo]], np.arange(redo.size))]
    # each ring starts at its smallest key: its top-left corner (a corner, so a vertex that stays)
    first = ring == edge
    starts = np.flatnonzero(first)
    ring_no = (np.cumsum(first) - 1)[ring]
    lengths = np.bincount(ring_no, minlength=starts.size)
    order = _ring_order(nxt, first, starts, ring_no, lengths)
    # a vertex is kept where the outline turns (GDAL drops the points along straight runs)
    before = np.empty(n, np.intp)
    before[nxt] = edge
    corner = d != d[before]
    order = order[corner[order]]
    ys, xs = np.divmod(keys[order] >> 2, w1)
    counts = np.bincount(ring_no[order], minlength=starts.size)
    # the region is on the left of each ring's first edge: to its lower right going down, upper right going right
    first_corner = keys[starts] >> 2
    first_dir = d[starts]
    pixel = first_corner + first_corner // w1 + np.array([1, w + 3, w + 2, 0])[first_dir]  # in ``padded``
    return Rings(np.column_stack([xs, ys]).astype(np.float64), counts, padded.reshape(-1)[pixel],
                 first_dir == _E)


def _ring_order(nxt: np.ndarray, first: np.ndarray, starts: np.ndarray, ring_no: np.ndarray,
                lengths: np.ndarray, walk: int = 256) -> np.ndarray:
    """The edges ring after ring, each ring from its first edge along ``nxt``. Every ring is walked at once,
    one step per round, for up to ``walk`` steps (outlines of objects are short); what is left of longer rings is
    ranked by pointer doubling, whose rounds cost every remaining edge each time."""
    n = nxt.size
    offset = _starts(lengths)
    order = np.empty(n, np.intp)
    at, rings = starts, np.arange(starts.size)
    for step in range(walk):
        order[offset[rings] + step] = at
        at = nxt[at]
        going = ~first[at]
        at, rings = at[going], rings[going]
        if not at.size:
            return order
    # the rest of the long rings: steps from each of their edges to the ring's first edge
    left = np.flatnonzero(np.isin(ring_no, rings))
    steps = np.zeros(n, np.intp)
    steps[left] = 1
    steps[starts] = 0
    jump = np.where(first, np.arange(n), nxt)
    going = left[~first[jump[left]]]
    while going.size:
        ahead = jump[going]
        steps[going] += steps[ahead]
        jump[going] = jump[ahead]
        going = going[~first[jump[going]]]
    lengths_left = lengths[ring_no[left]]
    along = (lengths_left - steps[left]) % lengths_left
    late = along >= walk
    order[offset[ring_no[left[late]]] + along[late]] = left[late]
    return order


def _cycle_minimum(nxt: np.ndarray, edge: np.ndarray) -> np.ndarray:
    """For each element of a permutation made of cycles, the smallest element of its cycle (pointer doubling:
    after k rounds each has the minimum of its next 2**k; a round that changes nothing has them all)."""
    low, jump = edge, nxt
    while True:
        lower = np.minimum(low, low[jump])
        if np.array_equal(lower, low):
            return low
        low, jump = lower, jump[jump]


def largest_parts(labels: np.ndarray, min_area: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each region's largest 4-connected part as a polygon with its holes, in pixel corners: (values, polygons,
    areas), one per region of non-zero ``labels`` whose largest part has at least ``min_area`` pixels, in the
    order of the part's top-left corner, row by row.

    Of parts of equal area the first in that order is kept. A polygon's holes are in the same order, as
    ``rasterio.features.shapes`` lists them."""
    rings = trace_rings(labels)
    if not rings.counts.size:
        return np.zeros(0, labels.dtype), np.empty(0, object), np.zeros(0)
    ring_area = rings.areas()
    outer = np.flatnonzero(~rings.hole)
    holes = np.flatnonzero(rings.hole)
    # which outer ring each hole belongs to: the only one of its region, else the smallest of its region that
    # holds the hole's first pixel (a region in several parts; a part may lie in another part's hole)
    owner = np.full(rings.counts.size, -1, np.intp)
    owner[outer] = outer
    names, region = np.unique(rings.label, return_inverse=True)  # regions numbered 0..k-1
    parts_of = np.bincount(region[outer], minlength=names.size)
    outer_of = np.full(parts_of.size, -1, np.intp)
    outer_of[region[outer]] = outer  # the outer ring of a region in one part
    owner[holes] = outer_of[region[holes]]
    shared = holes[parts_of[region[holes]] > 1]
    if shared.size:
        owner[shared] = _enclosing_parts(rings, shared, outer[parts_of[region[outer]] > 1], region, ring_area)
    part_area = ring_area.copy()
    owned = holes[owner[holes] >= 0]  # every hole has its part; guarded all the same
    np.subtract.at(part_area, owner[owned], ring_area[owned])
    # per region, its largest part (outer rings are in raster order, so a stable sort keeps the first of
    # equal ones)
    by_region = np.lexsort((-part_area[outer], region[outer]))
    chosen = np.sort(outer[by_region[_first_of_runs(region[outer][by_region])]])
    chosen = chosen[part_area[chosen] >= min_area]
    if not chosen.size:
        return np.zeros(0, labels.dtype), np.empty(0, object), np.zeros(0)
    # rings to build: each chosen outer ring, then its holes (a stable sort: they stay in raster order)
    ring_ids = np.flatnonzero(np.isin(owner, chosen))
    ring_ids = ring_ids[np.lexsort((rings.hole[ring_ids], owner[ring_ids]))]
    poly_of = np.searchsorted(chosen, owner[ring_ids])
    polygons = shapely.polygons(_linear_rings(rings, ring_ids), indices=poly_of)
    return rings.label[chosen], polygons, part_area[chosen]


def _linear_rings(rings: Rings, ids: np.ndarray) -> np.ndarray:
    """Shapely linear rings of the rings ``ids``, built in one call."""
    counts = rings.counts[ids]
    take = np.repeat(rings.starts[ids] - _starts(counts), counts) + np.arange(int(counts.sum()))  # their vertices
    return shapely.linearrings(rings.xy[take], indices=np.repeat(np.arange(ids.size), counts))


def _starts(counts: np.ndarray) -> np.ndarray:
    """Where each of consecutive runs of ``counts`` elements starts."""
    return np.cumsum(counts) - counts


def _first_of_runs(keys: np.ndarray) -> np.ndarray:
    """In sorted ``keys``, whether each element is the first of its equal run."""
    first = np.ones(keys.size, bool)
    first[1:] = keys[1:] != keys[:-1]
    return first


def _enclosing_parts(rings: Rings, holes: np.ndarray, outer: np.ndarray, region: np.ndarray,
                     ring_area: np.ndarray) -> np.ndarray:
    """For holes of regions in several parts: the smallest outer ring of the same region around the hole's first
    pixel (a part inside another part's hole is inside that part's outer ring too)."""
    shells = shapely.polygons(_linear_rings(rings, outer))
    points = shapely.points(rings.xy[rings.starts[holes]] + 0.5)  # the centre of the hole's top-left pixel
    hole_at, shell_at = shapely.STRtree(shells).query(points, predicate="within")
    same = region[holes[hole_at]] == region[outer[shell_at]]
    hole_at, shell_at = hole_at[same], shell_at[same]
    # per hole, its smallest enclosing shell: sorted by hole, then area, the first of each hole
    by = np.lexsort((ring_area[outer[shell_at]], hole_at))
    hole_at, shell_at = hole_at[by], shell_at[by]
    first = _first_of_runs(hole_at)
    owner = np.full(holes.size, -1, np.intp)
    owner[hole_at[first]] = outer[shell_at[first]]
    return owner
