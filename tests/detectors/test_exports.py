"""Detection exports: every object once in each file, in lon/lat, with its properties; counts add up."""

from __future__ import annotations

import csv
import json
import sqlite3
from contextlib import closing

import pyogrio
import pytest
from shapely import wkb
from shapely.geometry import shape

from detectors import exports
from detectors.models import DetectedObject
from tests.detectors.test_border_merge import run_with_pieces  # noqa: F401 - the fixture


@pytest.mark.django_db
def test_exports_stream_every_object_in_batches(run_with_pieces, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setattr(exports, "BATCH", 5)  # 12 objects read back in chunks of 5: three Arrow batches
    run = run_with_pieces
    paths = exports.write_exports(run, tmp_path)
    stored = {o.pk: wkb.loads(bytes(o.geometry.wkb)) for o in DetectedObject.objects.filter(detection_run=run)}

    features = json.loads(paths["geojson"].read_text())["features"]
    assert len(features) == len(stored) == 12
    assert {f["geometry"]["type"] for f in features} == {"Polygon"}
    assert {f["properties"]["class_name"] for f in features} == {"tree"}
    for feature in features:  # lon/lat, the stored geometry to the millimetre (1e-8 degree)
        geometry = shape(feature["geometry"])
        assert 6 < geometry.centroid.x < 10 and 46 < geometry.centroid.y < 47
        assert min(geometry.hausdorff_distance(s) for s in stored.values()) < 2e-8

    info = pyogrio.read_info(paths["gpkg"])
    assert info["features"] == 12 and info["geometry_type"] == "Polygon" and info["crs"] == "EPSG:4326"
    _, _, geometries, fields = pyogrio.raw.read(paths["gpkg"])
    exported = sorted(wkb.loads(g).wkt for g in geometries)
    assert exported == sorted(s.wkt for s in stored.values())
    assert set(fields[0]) == {"tree"} and all(score == pytest.approx(0.9) for score in fields[1])
    # the spatial index holds every object, each inside its box: a bounding-box read finds them through it
    assert info["capabilities"]["fast_spatial_filter"]
    with closing(sqlite3.connect(paths["gpkg"])) as db:
        boxes = {fid: box for fid, *box in db.execute("SELECT id, minx, maxx, miny, maxy FROM rtree_objects_geom")}
    _, fids, geometries_by_fid, _ = pyogrio.raw.read(paths["gpkg"], return_fids=True)
    assert sorted(boxes) == sorted(fids.tolist()) and len(fids) == 12
    for fid, geometry in zip(fids.tolist(), geometries_by_fid, strict=True):
        x0, y0, x1, y1 = wkb.loads(geometry).bounds
        minx, maxx, miny, maxy = boxes[fid]
        assert minx <= x0 and x1 <= maxx and miny <= y0 and y1 <= maxy
    assert not (tmp_path / "objects.arrows").exists()  # the spool is gone

    rows = list(csv.DictReader(paths["csv"].open()))
    assert [(r["area"], r["class_name"], r["count"]) for r in rows] == [("whole image", "tree", "12")]
    assert float(rows[0]["total_area_m2"]) == pytest.approx(12.0)


@pytest.mark.django_db
def test_geojson_properties_are_exactly_what_json_writes_for_any_class_name(run_with_pieces, tmp_path):  # noqa: F811
    """The properties are written by hand (made once per class and image, not per object): the text must be what
    ``json.dumps`` of the properties gives, quotes, backslashes and any script in a user's class name included."""
    from detectors.models import DetectorClass

    run = run_with_pieces
    name = 'big "old" tree \\ é 木 🌲'
    DetectorClass.objects.filter(detector=run.detector).update(name=name)
    paths = exports.write_exports(run, tmp_path)
    text = paths["geojson"].read_text()
    features = json.loads(text)["features"]
    stored = DetectedObject.objects.filter(detection_run=run).order_by("image_id", "cell", "id")
    assert len(features) == stored.count() == 12
    for feature, row in zip(features, stored, strict=True):
        expected = {"class_name": name, "score": round(row.score, 4), "area_m2": round(row.area_m2, 3),
                    "image_id": str(row.image_id)}  # fmt: skip
        assert feature["properties"] == expected
        assert f'"properties": {json.dumps(expected)}}}' in text
    _, _, _, fields = pyogrio.raw.read(paths["gpkg"])
    assert set(fields[0]) == {name} and set(fields[3]) == {str(row.image_id)}
