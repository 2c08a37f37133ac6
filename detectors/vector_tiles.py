"""Mapbox Vector Tiles of a detection run's objects, so the map stays fluid with hundreds of thousands.

One layer, ``objects``: an object drawn at least ``MIN_POLYGON_UNITS`` tile units across is its polygon
(clipped and snapped to the tile's 4096 grid); a smaller one is a point, and points falling in the same
``CLUSTER_UNITS`` cell are one point with a count ``n``, so a zoomed-out tile of a whole country holds
clusters, not every tree. Features carry ``class_id`` (polygons also ``score``). The map draws these tiles at
512 px, 8 units a pixel: polygons from 4 px across (smaller ones would draw as dots anyway), clusters on 8-px
cells; both bound the features per tile, so a tile's cost does not grow with the objects under it as polygons.

PostGIS builds tiles with ``ST_AsMVT``; other databases (the embedded SpatiaLite) go through the same rules
in Python with the small protobuf writer below (the MVT 2.1 wire format), at most ``MAX_FALLBACK_OBJECTS``
objects per tile.
"""

from __future__ import annotations

import math
import struct
from collections import defaultdict

from django.db import connection, transaction
from pyproj import Transformer
from shapely import wkb
from shapely.geometry import Polygon, box
from shapely.ops import transform

from detectors.models import DetectedObject, DetectionRun

EXTENT = 4096
BUFFER = 64
MIN_POLYGON_UNITS = 32
CLUSTER_UNITS = 64
MAX_FALLBACK_OBJECTS = 50_000
WORLD = 20037508.342789244  # half the Web Mercator world's width, in metres
LAYER = "objects"

# Web Mercator y of a latitude in degrees (x is linear: degrees x WORLD / 180).
_MY = f"(ln(tan(pi() / 4 + radians({{}}) / 2)) * {WORLD / math.pi!r})"

# The run's objects in the tile's (padded) lon/lat box (the spatial index). Each object's box in Web Mercator is
# kept by PostgreSQL in three generated columns (migration 0008: ``mercator_x``, ``mercator_y``, the box's middle,
# ``mercator_side``, its larger side), so choosing polygon or cluster and placing clusters reads three floats,
# never the geometry. Objects at least MIN_POLYGON_UNITS across are their polygon, projected by the tangent of
# Web Mercator at their middle latitude (one ST_Affine: exact in x; in y off by about tan(lat)/2 x their
# half-height in radians of their own height, under 1e-4 of it for an object of 1 km at 60 degrees) instead of a
# PROJ ST_Transform, several times slower; smaller ones are counted per CLUSTER_UNITS cell of the tile grid by
# arithmetic, one point per cell and class (the Python fallback's rule).
_RUN_IN_BOX = f"""
    FROM {DetectedObject._meta.db_table} o
    WHERE o.detection_run_id = %(run)s
      AND o.geometry && ST_MakeEnvelope(%(west)s, %(south)s, %(east)s, %(north)s, 4326)
"""
_K = repr(WORLD / 180)
_SQL = f"""
WITH polygons AS (
    SELECT ST_AsMVTGeom(
               ST_Affine(o.geometry, {_K}, 0, 0, {_K} / cos(radians(o.latc)), 0,
                         {_MY.format("o.latc")} - o.latc * {_K} / cos(radians(o.latc))),
               ST_TileEnvelope(%(z)s, %(x)s, %(y)s), {EXTENT}, {BUFFER}, NOT o.inside
           ) AS geom,
           o.detector_class_id::text AS class_id, o.score AS score, NULL::integer AS n
    FROM (
        SELECT o.geometry, o.detector_class_id, o.score, (ST_YMin(o.geometry) + ST_YMax(o.geometry)) / 2 AS latc,
               -- wholly inside the tile: nothing to clip (about a fifth of the polygon's cost)
               o.mercator_x - o.mercator_side / 2 > %(minx)s AND o.mercator_x + o.mercator_side / 2 < %(maxx)s
               AND o.mercator_y - o.mercator_side / 2 > %(miny)s AND o.mercator_y + o.mercator_side / 2 < %(maxy)s
               AS inside
        {_RUN_IN_BOX} AND o.mercator_side >= %(min_size)s
        OFFSET 0
    ) o
),
cells AS (
    SELECT round((o.mercator_x - %(minx)s) / %(unit)s) AS cx, round((%(maxy)s - o.mercator_y) / %(unit)s) AS cy,
           o.detector_class_id
    {_RUN_IN_BOX} AND o.mercator_side < %(min_size)s
),
points AS (
    SELECT ST_MakePoint(gx * {CLUSTER_UNITS}, gy * {CLUSTER_UNITS}) AS geom, detector_class_id::text AS class_id,
           NULL::double precision AS score, count(*)::integer AS n
    FROM (
        SELECT floor(cx / {CLUSTER_UNITS}) AS gx, floor(cy / {CLUSTER_UNITS}) AS gy, detector_class_id
        FROM cells
        WHERE cx BETWEEN 0 AND {EXTENT} AND cy BETWEEN 0 AND {EXTENT}
    ) c
    GROUP BY gx, gy, detector_class_id
)
SELECT ST_AsMVT(features, '{LAYER}', {EXTENT}, 'geom')
FROM (SELECT * FROM polygons WHERE geom IS NOT NULL UNION ALL SELECT * FROM points) features
"""


def tile_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """The Web Mercator bounds (minx, miny, maxx, maxy) of XYZ tile z/x/y."""
    size = 2 * WORLD / 2**z
    return -WORLD + x * size, WORLD - (y + 1) * size, -WORLD + (x + 1) * size, WORLD - y * size


def valid_tile(z: int, x: int, y: int) -> bool:
    return 0 <= z <= 24 and 0 <= x < 2**z and 0 <= y < 2**z


def detection_tile(run: DetectionRun, z: int, x: int, y: int) -> bytes:
    """The MVT of ``run``'s objects in tile z/x/y (empty bytes when there is nothing there)."""
    unit = (2 * WORLD / 2**z) / EXTENT  # metres per tile unit
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            # Compiling the query (JIT, about 80 ms) costs more than it saves; the clusters are grouped in memory
            # (the planner cannot estimate the cells, and sorted 100,000 rows on disk to group them).
            cursor.execute("SET LOCAL jit = off; SET LOCAL enable_sort = off; SET LOCAL work_mem = '16MB'")
            cursor.execute(_SQL, _params(run, z, x, y, unit))
            row = cursor.fetchone()
        return bytes(row[0]) if row and row[0] is not None else b""
    return _python_tile(run, z, x, y, unit)


def _params(run: DetectionRun, z: int, x: int, y: int, unit: float) -> dict:
    minx, miny, maxx, maxy = tile_bounds(z, x, y)
    west, south, east, north = _lonlat_box(z, x, y, unit)
    return {
        "z": z, "x": x, "y": y, "run": run.pk, "west": west, "south": south, "east": east, "north": north,
        "minx": minx, "miny": miny, "maxx": maxx, "maxy": maxy, "unit": unit, "min_size": MIN_POLYGON_UNITS * unit,
    }  # fmt: skip


def _lonlat_box(z: int, x: int, y: int, unit: float) -> tuple[float, float, float, float]:
    """The tile's bounds padded by its BUFFER, in lon/lat: the index lookup of the objects it may draw."""
    minx, miny, maxx, maxy = tile_bounds(z, x, y)
    pad = BUFFER * unit
    west, south = _TO_LONLAT.transform(minx - pad, max(miny - pad, -WORLD))
    east, north = _TO_LONLAT.transform(maxx + pad, min(maxy + pad, WORLD))
    return west, south, east, north


# ---------------------------------------------------------------------------------------------------- fallback

_TO_MERCATOR = Transformer.from_crs(4326, 3857, always_xy=True)
_TO_LONLAT = Transformer.from_crs(3857, 4326, always_xy=True)


def _python_tile(run: DetectionRun, z: int, x: int, y: int, unit: float) -> bytes:
    minx, miny, maxx, maxy = tile_bounds(z, x, y)
    pad = BUFFER * unit
    west, south, east, north = _lonlat_box(z, x, y, unit)
    rows = (
        DetectedObject.objects.filter(detection_run=run, geometry__bboverlaps=box(west, south, east, north).wkt)
        .order_by("pk")
        .values_list("geometry", "detector_class_id", "score")[:MAX_FALLBACK_OBJECTS]
    )
    clip = box(minx - pad, miny - pad, maxx + pad, maxy + pad)

    def to_units(px: float, py: float) -> tuple[int, int]:
        return round((px - minx) / unit), round((maxy - py) / unit)

    polygons: list[tuple[list[list[tuple[int, int]]], dict]] = []
    clusters: dict[tuple[int, int, str], int] = defaultdict(int)
    for geometry, class_id, score in rows:
        shape = transform(_TO_MERCATOR.transform, wkb.loads(bytes(geometry.wkb)))
        bx0, by0, bx1, by1 = shape.bounds
        if max(bx1 - bx0, by1 - by0) < MIN_POLYGON_UNITS * unit:
            cx, cy = to_units((bx0 + bx1) / 2, (by0 + by1) / 2)  # the middle of its box, as in SQL
            if 0 <= cx <= EXTENT and 0 <= cy <= EXTENT:
                clusters[(cx // CLUSTER_UNITS * CLUSTER_UNITS, cy // CLUSTER_UNITS * CLUSTER_UNITS, str(class_id))] += 1
            continue
        clipped = shape.intersection(clip)
        for part in getattr(clipped, "geoms", [clipped]):
            if isinstance(part, Polygon) and not part.is_empty:
                rings = [[to_units(*p) for p in ring.coords] for ring in (part.exterior, *part.interiors)]
                polygons.append((rings, {"class_id": str(class_id), "score": float(score)}))
    points = [((px, py), {"class_id": class_id, "n": n}) for (px, py, class_id), n in clusters.items()]
    if not polygons and not points:
        return b""
    return encode_layer(LAYER, polygons, points)


# ---------------------------------------------------------------------------------------- protobuf (MVT 2.1)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number: int, wire_type: int, payload: bytes | int) -> bytes:
    key = _varint((number << 3) | wire_type)
    if wire_type == 0:
        return key + _varint(int(payload))
    return key + _varint(len(payload)) + payload  # type: ignore[arg-type]


def _zigzag(n: int) -> int:
    return (n << 1) ^ (n >> 31)


def _packed(values: list[int]) -> bytes:
    return b"".join(_varint(v) for v in values)


MOVE_TO, LINE_TO, CLOSE_PATH = 1, 2, 7


def _command(command: int, count: int) -> int:
    return (command & 0x7) | (count << 3)


def _ring_commands(points: list[tuple[int, int]], cursor: list[int]) -> list[int]:
    """MoveTo the first point, LineTo the rest, ClosePath (``points`` without the closing repeat)."""
    if len(points) < 3:
        return []
    commands: list[int] = []
    for i, (px, py) in enumerate(points):
        if i == 0:
            commands.append(_command(MOVE_TO, 1))
        elif i == 1:
            commands.append(_command(LINE_TO, len(points) - 1))
        commands += [_zigzag(px - cursor[0]), _zigzag(py - cursor[1])]
        cursor[0], cursor[1] = px, py
    commands.append(_command(CLOSE_PATH, 1))
    return commands


def _signed_area(ring: list[tuple[int, int]]) -> float:
    return sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring, ring[1:] + ring[:1], strict=True)) / 2


def encode_layer(
    name: str,
    polygons: list[tuple[list[list[tuple[int, int]]], dict]],
    points: list[tuple[tuple[int, int], dict]],
) -> bytes:
    """One MVT layer of polygons (rings in tile units, exterior first) and points, with their properties."""
    keys: list[str] = []
    values: list[tuple[str, object]] = []
    key_index: dict[str, int] = {}
    value_index: dict[tuple[str, object], int] = {}

    def tags(properties: dict) -> list[int]:
        out = []
        for key, value in properties.items():
            if value is None:
                continue
            if key not in key_index:
                key_index[key] = len(keys)
                keys.append(key)
            kind = "string" if isinstance(value, str) else "double" if isinstance(value, float) else "int"
            token = (kind, value)
            if token not in value_index:
                value_index[token] = len(values)
                values.append(token)
            out += [key_index[key], value_index[token]]
        return out

    features = []
    for rings, properties in polygons:
        cursor = [0, 0]
        geometry: list[int] = []
        for index, ring in enumerate(rings):
            clean = ring[:-1] if len(ring) > 1 and ring[0] == ring[-1] else ring
            exterior = index == 0
            # In tile coordinates (y down) exterior rings are clockwise (positive area), holes the other way.
            if (_signed_area(clean) > 0) != exterior:
                clean = clean[::-1]
            geometry += _ring_commands(clean, cursor)
        if geometry:
            features.append(_field(2, 2, _packed(tags(properties))) + _field(3, 0, 3) + _field(4, 2, _packed(geometry)))
    for (px, py), properties in points:
        geometry = [_command(MOVE_TO, 1), _zigzag(px), _zigzag(py)]
        features.append(_field(2, 2, _packed(tags(properties))) + _field(3, 0, 1) + _field(4, 2, _packed(geometry)))

    def encode_value(kind: str, value: object) -> bytes:
        if kind == "string":
            return _field(1, 2, str(value).encode())
        if kind == "double":
            return _varint((3 << 3) | 1) + struct.pack("<d", float(value))  # type: ignore[arg-type]
        number = int(value)  # type: ignore[call-overload]
        return _field(6, 0, _zigzag64(number)) if number < 0 else _field(5, 0, number)

    layer = _field(15, 0, 2) + _field(1, 2, name.encode())
    layer += b"".join(_field(2, 2, f) for f in features)
    layer += b"".join(_field(3, 2, k.encode()) for k in keys)
    layer += b"".join(_field(4, 2, encode_value(kind, value)) for kind, value in values)
    layer += _field(5, 0, EXTENT)
    return _field(3, 2, layer)


def _zigzag64(n: int) -> int:
    return (n << 1) ^ (n >> 63)
