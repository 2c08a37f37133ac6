"""Vector tiles of detections: polygons where objects are big enough to draw, clustered points where not,
the same from PostGIS's ST_AsMVT and from the Python fallback; decoded with protobuf against the MVT schema."""

from __future__ import annotations

import morecantile
import pytest
from django.contrib.gis.geos import GEOSGeometry
from django.urls import reverse
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from detectors.models import DetectedObject, DetectionRun, Detector, DetectorClass, RunStatus, TrainingRun
from detectors.vector_tiles import BUFFER, EXTENT, _python_tile, detection_tile

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
# Near the centre of `ready_image`'s footprint (6.60-6.61 E, 46.50-46.51 N).
LON, LAT = 6.6031, 46.5031
BIG, SMALL = 12, 30  # 20 m squares and 2 m squares


def _tile_class():
    """The MVT 2.1 `Tile` message, built from its schema (vector_tile.proto) at run time."""
    f = descriptor_pb2.FileDescriptorProto(name="vector_tile_test.proto", package="vt", syntax="proto2")
    tile = f.message_type.add(name="Tile")
    value = tile.nested_type.add(name="Value")
    kinds = ["string_value", "float_value", "double_value", "int_value", "uint_value", "sint_value", "bool_value"]
    for number, (name, kind) in enumerate(zip(kinds, [9, 2, 1, 3, 4, 18, 8], strict=True), start=1):
        value.field.add(name=name, number=number, type=kind, label=1)
    feature = tile.nested_type.add(name="Feature")
    feature.field.add(name="id", number=1, type=4, label=1)
    feature.field.add(name="tags", number=2, type=13, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    feature.field.add(name="type", number=3, type=13, label=1)
    feature.field.add(name="geometry", number=4, type=13, label=3, options=descriptor_pb2.FieldOptions(packed=True))
    layer = tile.nested_type.add(name="Layer")
    layer.field.add(name="version", number=15, type=13, label=2)
    layer.field.add(name="name", number=1, type=9, label=2)
    layer.field.add(name="features", number=2, type=11, label=3, type_name=".vt.Tile.Feature")
    layer.field.add(name="keys", number=3, type=9, label=3)
    layer.field.add(name="values", number=4, type=11, label=3, type_name=".vt.Tile.Value")
    layer.field.add(name="extent", number=5, type=13, label=1)
    tile.field.add(name="layers", number=3, type=11, label=3, type_name=".vt.Tile.Layer")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("vt.Tile"))


Tile = _tile_class()


def decode(data: bytes) -> list[dict]:
    """Features as {type, props, points}: `points` are all coordinates the geometry commands visit."""
    tile = Tile()
    tile.ParseFromString(data)
    out = []
    for layer in tile.layers:
        assert layer.name == "objects" and layer.extent == EXTENT and layer.version == 2
        for feature in layer.features:
            props = {}
            for k, v in zip(feature.tags[::2], feature.tags[1::2], strict=True):
                value = layer.values[v]
                kinds = ("string_value", "double_value", "uint_value", "int_value", "sint_value")
                props[layer.keys[k]] = next(getattr(value, name) for name in kinds if value.HasField(name))
            x = y = i = 0
            points, geometry = [], list(feature.geometry)
            while i < len(geometry):
                command, count = geometry[i] & 7, geometry[i] >> 3
                i += 1
                if command == 7:
                    continue
                for _ in range(count):
                    dx, dy = geometry[i], geometry[i + 1]
                    x += (dx >> 1) ^ -(dx & 1)
                    y += (dy >> 1) ^ -(dy & 1)
                    points.append((x, y))
                    i += 2
            out.append({"type": feature.type, "props": props, "points": points})
    return out


@pytest.fixture
def run_with_objects(personas, project, ready_image):
    detector = Detector.objects.create(organization=personas.organization, project=project, name="Trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree", position=0)
    version = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    run = DetectionRun.objects.create(detector=detector, training_run=version, status=RunStatus.SUCCEEDED)
    run.images.add(ready_image)
    # Everything within about 120 x 70 m around the middle of one z17 tile, so every test tile holds it all.
    west, south, east, north = WEB_MERCATOR.bounds(WEB_MERCATOR.tile(LON, LAT, 17))
    lon0, lat0 = (west + east) / 2 - 0.0008, (south + north) / 2 - 0.0003
    metre = 1 / 111_320  # degrees of latitude per metre (close enough here)
    rows = []
    for i in range(BIG):
        lon, lat = lon0 + (i % 4) * 25 * metre * 1.45, lat0 + (i // 4) * 25 * metre
        rows.append(_square(run, ready_image, tree, lon, lat, 20 * metre))
    for i in range(SMALL):
        lon, lat = lon0 + 110 * metre * 1.45 + (i % 6) * 3 * metre * 1.45, lat0 + (i // 6) * 3 * metre
        rows.append(_square(run, ready_image, tree, lon, lat, 2 * metre))
    DetectedObject.objects.bulk_create(rows)
    return run


def _square(run, image, cls, lon, lat, size):
    wkt = f"POLYGON(({lon} {lat},{lon + size} {lat},{lon + size} {lat + size},{lon} {lat + size},{lon} {lat}))"
    return DetectedObject(
        detection_run=run, image=image, detector_class=cls, geometry=GEOSGeometry(wkt, srid=4326), score=0.9, area_m2=1
    )


def summary(features: list[dict]) -> tuple[int, int]:
    polygons = [f for f in features if f["type"] == 3]
    points = [f for f in features if f["type"] == 1]
    for f in features:
        assert all(-BUFFER <= c <= EXTENT + BUFFER for p in f["points"] for c in p)
    return len(polygons), sum(int(f["props"]["n"]) for f in points)


@pytest.mark.parametrize(
    "z, expected",
    [(17, (BIG + SMALL, 0)), (15, (BIG, SMALL)), (14, (BIG, SMALL)), (13, (0, BIG + SMALL)), (8, (0, BIG + SMALL))],
    ids=["z17", "z15", "z14", "z13", "z8"],
)
def test_polygons_where_they_can_be_drawn_clusters_where_not(run_with_objects, z, expected):
    tile = WEB_MERCATOR.tile(LON, LAT, z)
    postgis = decode(detection_tile(run_with_objects, z, tile.x, tile.y))
    fallback = decode(_python_tile(run_with_objects, z, tile.x, tile.y, (2 * 20037508.342789244 / 2**z) / EXTENT))
    assert summary(postgis) == expected
    assert summary(fallback) == expected
    tree_id = str(DetectorClass.objects.get(name="tree").pk)
    assert {f["props"]["class_id"] for f in postgis + fallback} == {tree_id}
    if z == 8:  # far out, the 42 objects are a handful of points, not 42
        assert len(postgis) < 10 and len(fallback) < 10


def test_an_empty_tile_is_empty(run_with_objects):
    tile = WEB_MERCATOR.tile(LON + 1, LAT, 14)
    assert detection_tile(run_with_objects, 14, tile.x, tile.y) == b""
    assert _python_tile(run_with_objects, 14, tile.x, tile.y, 1.0) == b""


def test_tiles_through_the_api_are_scoped_and_cached(run_with_objects, personas, client_for):
    tile = WEB_MERCATOR.tile(LON, LAT, 16)
    url = reverse("v1:detectionrun-tiles", args=[run_with_objects.pk, 16, tile.x, tile.y])
    response = client_for(personas.owner).get(url)
    assert response.status_code == 200 and response["Content-Type"] == "application/vnd.mapbox-vector-tile"
    assert "max-age=3600" in response["Cache-Control"] and len(decode(response.content)) > 0
    assert client_for(personas.outsider).get(url).status_code == 404
    outside = reverse("v1:detectionrun-tiles", args=[run_with_objects.pk, 3, 8, 0])
    assert client_for(personas.owner).get(outside).status_code == 404
    counts = client_for(personas.owner).get(reverse("v1:detectionrun-counts", args=[run_with_objects.pk])).json()
    assert counts["results"][0]["count"] == BIG + SMALL and counts["results"][0]["area"] == "whole image"


def _boxes(features: list[dict]) -> list[tuple[int, int, int, int]]:
    out = []
    for f in features:
        if f["type"] == 3:
            xs, ys = zip(*f["points"], strict=True)
            out.append((min(xs), min(ys), max(xs), max(ys)))
    return sorted(out)


def _clusters(features: list[dict]) -> list:
    return sorted((f["points"][0], int(f["props"]["n"])) for f in features if f["type"] == 1)


def assert_drawn_as_the_exact_projection_puts_them(run, z: int) -> None:
    tile = WEB_MERCATOR.tile(LON, LAT, z)
    postgis = decode(detection_tile(run, z, tile.x, tile.y))
    fallback = decode(_python_tile(run, z, tile.x, tile.y, (2 * 20037508.342789244 / 2**z) / EXTENT))
    assert len(_boxes(postgis)) == len(_boxes(fallback))
    for got, exact in zip(_boxes(postgis), _boxes(fallback), strict=True):
        assert all(abs(a - b) <= 1 for a, b in zip(got, exact, strict=True)), (got, exact)
    assert _clusters(postgis) == _clusters(fallback)


@pytest.mark.parametrize("z", [17, 15, 8])
def test_postgis_draws_every_object_where_the_exact_projection_puts_it(run_with_objects, z):
    """PostGIS projects boxes and polygons arithmetically (no ST_Transform per object): its polygons and
    clusters lie where the fallback's exact pyproj projection puts them, within a tile unit."""
    assert_drawn_as_the_exact_projection_puts_them(run_with_objects, z)


def test_an_object_whose_geometry_changes_is_drawn_where_it_now_is(run_with_objects):
    """The boxes the tiles read are kept by PostgreSQL from the geometry (generated columns): a changed
    geometry (as the merge across cells writes) moves its polygon and its cluster with it."""
    from django.contrib.gis.geos import Polygon

    for obj in DetectedObject.objects.filter(detection_run=run_with_objects):
        (x0, y0), (x1, y1) = obj.geometry.extent[:2], obj.geometry.extent[2:]
        obj.geometry = Polygon.from_bbox((x0 + 0.0002, y0 + 0.0001, x1 + 0.0002, y1 + 0.0001))
        obj.geometry.srid = 4326
        obj.save(update_fields=["geometry"])
    for z in (17, 15):
        assert_drawn_as_the_exact_projection_puts_them(run_with_objects, z)
