"""Outlines traced with array operations (``workers.ml.tracing``) against GDAL's polygonizer, ring for ring."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import shapely
from rasterio.features import shapes

from workers.ml import tracing
from workers.ml.tracing import largest_parts, trace_rings

_RING_ORDER = tracing._ring_order


def _blobs(rng: np.random.Generator, h: int, w: int, n: int, fill: float) -> np.ndarray:
    """Overlapping ellipses with pixels knocked out: holes, parts touching at corners, islands in holes."""
    labels = np.zeros((h, w), np.int32)
    yy, xx = np.ogrid[:h, :w]
    for value in range(1, n + 1):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(1, 10, 2)
        inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        labels[inside & (rng.random((h, w)) < fill)] = value
    return labels


def _gdal_rings(labels: np.ndarray) -> list[tuple[int, tuple]]:
    return sorted((int(v), tuple(map(tuple, np.asarray(ring)[:-1].tolist())))
                  for geom, v in shapes(labels, mask=labels != 0, connectivity=4) for ring in geom["coordinates"])


def _our_rings(labels: np.ndarray) -> list[tuple[int, tuple]]:
    rings = trace_rings(labels)
    ends = np.cumsum(rings.counts)
    return sorted((int(v), tuple(map(tuple, rings.xy[e - c : e].tolist())))
                  for v, c, e in zip(rings.label, rings.counts, ends, strict=True))


def _special_cases() -> list[np.ndarray]:
    saddle = np.array([[1, 0], [0, 1]], np.int32)  # one value, two parts meeting at a corner
    pinch = np.zeros((6, 6), np.int32)  # one part whose outline touches itself at a corner: ring + hole
    pinch[1:5, 1:5] = 3
    pinch[2:4, 2:4] = 0
    pinch[1, 1] = 0
    pinch[2, 2] = 3
    pinch[2, 3] = 0
    nested = np.zeros((11, 11), np.int32)  # a ring of 5 around a hole holding an island of 5 with its own hole
    nested[1:10, 1:10] = 5
    nested[2:9, 2:9] = 0
    nested[3:8, 3:8] = 5
    nested[5, 5] = 0
    neighbours = np.array([[1, 1, 2], [3, 4, 2], [3, 4, 4]], np.int32)  # every pixel edge between two regions
    full = np.full((4, 7), 9, np.int32)  # the whole image, its outline on the image's edges
    return [saddle, pinch, nested, neighbours, full, np.zeros((3, 3), np.int32), np.array([[7]], np.int32)]


@pytest.mark.parametrize("seed", range(4))
def test_rings_are_gdals_vertex_for_vertex(seed):
    """Same rings as ``rasterio.features.shapes(connectivity=4)``: same vertices, same first vertex, same
    direction (outer rings and holes), straight runs without their middle points, for every region."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        labels = _blobs(rng, int(rng.integers(5, 70)), int(rng.integers(5, 90)), int(rng.integers(1, 40)),
                        float(rng.uniform(0.6, 1.0)))
        assert _our_rings(labels) == _gdal_rings(labels)
    for labels in _special_cases():
        assert _our_rings(labels) == _gdal_rings(labels)


def test_rings_longer_than_the_parallel_walk(monkeypatch):
    """Rings longer than the steps walked in parallel are ranked by pointer doubling: the same rings."""
    rng = np.random.default_rng(7)
    cases = [_blobs(rng, 60, 80, 30, 0.8) for _ in range(10)] + _special_cases()
    for walk in (1, 3):
        monkeypatch.setattr(tracing, "_ring_order", functools.partial(_RING_ORDER, walk=walk))
        for labels in cases:
            assert _our_rings(labels) == _gdal_rings(labels)
    big = np.zeros((300, 300), np.int32)
    big[10:290, 10:290] = 1  # a ring of 1,120 pixel edges, four vertices, with the default walk
    monkeypatch.undo()
    rings = trace_rings(big)
    assert rings.xy.tolist() == [[10, 10], [10, 290], [290, 290], [290, 10]]


def test_ring_areas_and_holes():
    labels = _special_cases()[2]
    rings = trace_rings(labels)
    assert rings.hole.tolist() == [False, True, False, True]
    assert rings.areas().tolist() == [81, 49, 25, 1]


def test_largest_parts_are_gdals_largest_polygons():
    """Each region's largest part, holes included, is the polygon GDAL draws for it, byte for byte; its area
    is the polygon's. Regions whose largest part ties with another are left out of the comparison (GDAL and
    the tracer may keep either)."""
    rng = np.random.default_rng(3)
    compared = 0
    # tiled blobs with pixels knocked out: each value in many parts, many with holes, one part inside another
    tiled = [np.tile(_blobs(rng, 40, 50, 15, 0.9), (3, 4)) for _ in range(4)]
    for labels in tiled:
        labels[rng.random(labels.shape) < 0.05] = 0
    for labels in [_blobs(rng, 60, 80, 40, 0.85) for _ in range(30)] + tiled + _special_cases():
        by_value: dict[int, list] = {}
        for geom, v in shapes(labels, mask=labels != 0, connectivity=4):
            by_value.setdefault(int(v), []).append(shapely.geometry.shape(geom))
        values, polygons, areas = largest_parts(labels)
        assert sorted(values.tolist()) == sorted(by_value)
        for v, poly, area in zip(values.tolist(), polygons, areas, strict=True):
            sizes = sorted((p.area for p in by_value[v]), reverse=True)
            assert area == poly.area == sizes[0]
            if len(sizes) > 1 and sizes[0] == sizes[1]:
                continue
            expected = max(by_value[v], key=lambda p: p.area)
            assert shapely.to_wkb(poly) == shapely.to_wkb(expected)
            compared += 1
    assert compared > 500


def test_largest_parts_order_min_area_and_empty():
    labels = np.zeros((10, 10), np.int32)
    labels[6:9, 1:4] = 2  # lower, 9 px
    labels[1:3, 5:7] = 1  # upper, 4 px
    labels[1, 1] = 3  # upper left, 1 px
    values, polygons, areas = largest_parts(labels)
    assert values.tolist() == [3, 1, 2] and areas.tolist() == [1, 4, 9]  # by the part's top-left corner
    values, _, areas = largest_parts(labels, min_area=4)
    assert values.tolist() == [1, 2]
    for empty in (np.zeros((4, 4), np.int32), labels):
        values, polygons, areas = largest_parts(empty, min_area=100)
        assert values.size == polygons.size == areas.size == 0
    # a part inside another part's hole: the larger part (with its hole) is kept
    values, polygons, areas = largest_parts(_special_cases()[2])
    assert areas.tolist() == [32] and len(polygons[0].interiors) == 1
