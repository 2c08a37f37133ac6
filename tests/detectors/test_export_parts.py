"""Exports by parts: each done cell stores its objects away from cell borders as the exports write them, and the
run's final step copies those parts, then adds the merged objects along the borders; every object exactly once,
whatever part is missing, damaged or stale."""

from __future__ import annotations

import io
import json
import logging
import pickle

import pyogrio
import pytest
import shapely
from django.contrib.gis.db.models.functions import AsGeoJSON

from detectors import exports
from detectors.models import (
    DetectedObject,
    DetectionCell,
    DetectionRun,
    DetectorClass,
    RunStatus,
    detection_run_prefix,
)
from detectors.results import NewObject
from detectors.runs import DETECTION_CELL, CellObjects
from imagery.storage import get_blob_store
from tests.detectors.test_border_merge import run_with_pieces  # noqa: F401 - the fixture
from workers.ml.grid import cells_reaching, neighbour_keys
from workers.pipelines import finish_detection


def _canonical(geometry: dict) -> str:
    """A GeoJSON geometry's text with every coordinate a float (PostGIS writes 55 where shapely writes 55.0)."""
    return json.dumps(json.loads(json.dumps(geometry), parse_int=float), sort_keys=True)


def _geometries(features: list[dict]) -> list[str]:
    return sorted(_canonical(f["geometry"]) for f in features)


def _stored(run: DetectionRun) -> list[str]:
    """The run's objects as PostGIS writes them in GeoJSON at the exports' precision."""
    rows = DetectedObject.objects.filter(detection_run=run).annotate(g=AsGeoJSON("geometry", precision=8))
    return sorted(_canonical(json.loads(g)) for g in rows.values_list("g", flat=True))


def _rows(cell: DetectionCell) -> list[NewObject]:
    """The rows the cell stored, as its task hands them to ``write_cell_part`` (``detect_cell_objects``)."""
    return [
        NewObject(None, o.detection_run_id, o.image_id, o.detector_class_id, o.cell, o.geometry.hexewkb.decode(),
                  o.score, o.area_m2, o.near_border)  # fmt: skip
        for o in DetectedObject.objects.filter(detection_run_id=cell.run_id, cell=cell.key).order_by("id")
    ]


def _exported(run: DetectionRun, tmp_path, store=None) -> tuple[list[dict], int]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = exports.write_exports(run, tmp_path, store)
    features = json.loads(paths["geojson"].read_text())["features"]
    return features, pyogrio.read_info(paths["gpkg"])["features"] if "gpkg" in paths else 0


@pytest.mark.django_db
def test_a_done_cell_stores_its_objects_away_from_borders_and_the_exports_copy_them(run_with_pieces, tmp_path):  # noqa: F811
    run, store = run_with_pieces, get_blob_store()
    for cell in DetectionCell.objects.filter(run=run):
        assert exports.write_cell_part(cell, _rows(cell), store)
    parts = dict(DetectionCell.objects.filter(run=run).values_list("key", "export_part"))
    assert all(key.startswith(detection_run_prefix(run.pk) + exports.PARTS) for key in parts.values())
    # a part holds exactly its cell's objects away from the borders: here one far object in two of the cells
    sizes = {}
    for cell_key, key in parts.items():
        with store.open_read(key) as fh:
            sizes[cell_key] = len(exports.ExportChunk.from_bytes(fh.read()))
    assert sizes == {"r0c0": 1, "r0c1": 0, "r1c0": 0, "r1c1": 1}

    # the parts' copies are what the database would have written: the same features, every object once
    from_parts, gpkg_from_parts = _exported(run, tmp_path / "a", store)
    from_database, gpkg_from_database = _exported(run, tmp_path / "b")
    assert len(from_parts) == 12 and gpkg_from_parts == 12
    assert sorted(map(json.dumps, from_parts)) == sorted(map(json.dumps, from_database))
    assert gpkg_from_database == 12
    assert _geometries(from_parts) == _stored(run)


@pytest.mark.django_db(transaction=True)
def test_the_final_step_merges_exports_each_object_once_and_drops_the_parts(run_with_pieces):  # noqa: F811
    run, store = run_with_pieces, get_blob_store()
    for cell in DetectionCell.objects.filter(run=run):
        exports.write_cell_part(cell, _rows(cell), store)
    assert finish_detection(str(run.pk)) == RunStatus.SUCCEEDED
    run.refresh_from_db()
    with store.open_read(run.result_keys["geojson"]) as fh:
        features = json.load(fh)["features"]
    assert len(features) == 7 and _geometries(features) == _stored(run)  # the border pieces merged
    assert list(store.list(detection_run_prefix(run.pk) + exports.PARTS)) == []
    assert not DetectionCell.objects.filter(run=run).exclude(export_part="").exists()


@pytest.mark.django_db
def test_a_missing_or_damaged_part_is_read_from_the_database(run_with_pieces, tmp_path, caplog):  # noqa: F811
    run, store = run_with_pieces, get_blob_store()
    for cell in DetectionCell.objects.filter(run=run):
        exports.write_cell_part(cell, _rows(cell), store)
    r0c0 = DetectionCell.objects.get(run=run, key="r0c0")
    r1c1 = DetectionCell.objects.get(run=run, key="r1c1")
    store.delete(r0c0.export_part)
    with store.open_read(r1c1.export_part) as fh:
        data = fh.read()
    store.put_stream(r1c1.export_part, io.BytesIO(data[: len(data) // 2]))
    with caplog.at_level(logging.WARNING, logger="detectors.exports"):
        features, gpkg_count = _exported(run, tmp_path, store)
    assert len(features) == 12 and gpkg_count == 12 and _geometries(features) == _stored(run)
    assert sum("unusable" in r.getMessage() for r in caplog.records) == 2


@pytest.mark.django_db
def test_a_class_renamed_after_the_parts_were_written_is_exported_by_its_new_name(run_with_pieces, tmp_path):  # noqa: F811
    """A long detection's parts carry the class names of when each cell ended; a class renamed since makes them
    stale, so the exports read those cells' objects from the database, under the name the user sees now."""
    run, store = run_with_pieces, get_blob_store()
    for cell in DetectionCell.objects.filter(run=run):
        exports.write_cell_part(cell, _rows(cell), store)
    with store.open_read(DetectionCell.objects.get(run=run, key="r0c0").export_part) as fh:
        part = exports.ExportChunk.from_bytes(fh.read())
    tree = DetectorClass.objects.get(detector=run.detector, name="tree")
    assert part.classes == {str(tree.pk): "tree"} and part.class_name == ["tree"]
    tree.name = "oak"
    tree.save(update_fields=["name"])
    features, gpkg_count = _exported(run, tmp_path, store)
    assert len(features) == 12 and gpkg_count == 12 and _geometries(features) == _stored(run)
    assert {f["properties"]["class_name"] for f in features} == {"oak"}


@pytest.mark.django_db
def test_a_cell_done_again_replaces_its_part_and_never_reuses_the_old_one(run_with_pieces, tmp_path):  # noqa: F811
    run, store = run_with_pieces, get_blob_store()
    cell = DetectionCell.objects.get(run=run, key="r0c0")
    exports.write_cell_part(cell, _rows(cell), store)
    old_key = DetectionCell.objects.get(pk=cell.pk).export_part
    # retried: the cell runs again (another attempt) and finds one object, far from the borders, instead
    far = DetectedObject.objects.get(detection_run=run, cell="r0c0", near_border=False)
    DetectionCell.objects.filter(pk=cell.pk).update(status=DetectionCell.Status.RUNNING, attempts=2)
    hexewkb = far.geometry.hexewkb.decode()
    row = NewObject(None, run.pk, cell.image_id, far.detector_class_id, "r0c0", hexewkb, 0.5, 3.0, False)
    assert DETECTION_CELL.succeed(str(cell.pk), CellObjects(rows=[row], seconds=1.0)) == "done"
    cell.refresh_from_db()
    assert cell.export_part and cell.export_part != old_key
    with store.open_read(cell.export_part) as fh:
        part = exports.ExportChunk.from_bytes(fh.read())
    assert part.score == [0.5] and part.area_m2 == [3.0]
    features, _ = _exported(run, tmp_path, store)
    # the cell's four objects of its first attempt are gone; its old part is not read
    assert len(features) == 12 - 4 + 1 and _geometries(features) == _stored(run)
    assert [f["properties"]["score"] for f in features].count(0.5) == 1


@pytest.mark.django_db
def test_a_part_is_not_recorded_for_a_cell_whose_objects_were_replaced_meanwhile(run_with_pieces):  # noqa: F811
    run, store = run_with_pieces, get_blob_store()
    cell = DetectionCell.objects.get(run=run, key="r0c0")
    DetectionCell.objects.filter(pk=cell.pk).update(status=DetectionCell.Status.RUNNING)  # running again
    assert not exports.write_cell_part(cell, _rows(cell), store)
    assert DetectionCell.objects.get(pk=cell.pk).export_part == ""
    assert list(store.list(detection_run_prefix(run.pk) + exports.PARTS)) == []


def test_the_part_format_round_trips_without_pickle():
    chunk = exports.ExportChunk('{"a": 1},{"b": "é"}', [b"\x01\x02", b"", b"\x03"], ["tree", "é", "x"],
                                [0.5, 1.0, 0.25], [1.0, 2.0, 3.0], ["i1", "i2", "i3"],
                                {"c1": "tree", "c2": "é"})  # fmt: skip
    back = exports.ExportChunk.from_bytes(chunk.to_bytes())
    assert back == chunk
    with pytest.raises(ValueError):  # a pickle inside is refused, not run
        exports.ExportChunk.from_bytes(pickle.dumps({"x": 1}))


def test_a_cell_looks_as_far_as_a_border_strip_can_reach():
    assert neighbour_keys("r0c1") == ["r0c0", "r0c1", "r0c2", "r1c0", "r1c1", "r1c2"]
    assert cells_reaching("r2c3", [6000, 4000, 2000, 2000], 67) == 1
    # cells smaller than twice the margin: the borders two cells away reach the cell's objects
    assert cells_reaching("r2c3", [300, 200, 100, 100], 60) == 2
    assert cells_reaching("r2c3", [300, 200, 100, 17], 60) == 2  # an edge cell cut short: the grid's size counts


def test_geojson_geometries_round_coordinates_to_a_millimetre_and_keep_the_shape():
    square = shapely.Polygon([(9.123456789123, 46.5), (9.2, 46.5), (9.2, 46.600000004), (9.123456789123, 46.5)])
    (text,) = exports.geojson_geometries([shapely.to_wkb(square)])
    ring = json.loads(text)["coordinates"][0]
    assert json.loads(text)["type"] == "Polygon"
    assert ring[0] == [9.12345679, 46.5] and ring[2] == [9.2, 46.6]
    assert shapely.equals_exact(shapely.from_geojson(text), square, tolerance=1e-8)
    assert exports.geojson_geometries([]) == []


def test_a_part_from_the_cells_lonlat_geometries_is_the_part_its_rows_give():
    """The cell's task hands its lon/lat geometries to the part instead of having the rows' hex EWKB parsed back:
    the same part to the byte, features, WKB and columns, and the same rows."""
    from shapely.geometry import Point

    from detectors.results import lonlat_geometries, stored_geometries

    ring = Point(500_010, 5_200_010).buffer(6).difference(Point(500_010, 5_200_010).buffer(2))  # with a hole
    utm = [shapely.box(500_000 + i * 3.7, 5_200_000, 500_002.5 + i * 3.7, 5_200_001.3 + i % 4) for i in range(40)]
    utm += [ring, Point(500_100.123456789, 5_200_100.987654321).buffer(4.2)]
    lonlat = lonlat_geometries(utm, "EPSG:32632")
    stored = stored_geometries(utm, "EPSG:32632", lonlat)
    assert stored == stored_geometries(utm, "EPSG:32632")
    ids = {"run": "3f1c2b9e-0d1a-4e57-9a43-5b0c0f6b1a11", "image": "6a0d4b8c-2f5e-4c1d-8e7a-9b3c1d2e4f50"}
    tree, shrub = "0b6c7a8d-1e2f-4a3b-9c4d-5e6f7a8b9c0d", "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
    rows = [
        NewObject(None, ids["run"], ids["image"], tree if i % 3 else shrub, "r0c0", geometry, i / 50, area, i % 4 == 0)
        for i, (geometry, area) in enumerate(stored)
    ]
    names = {tree: "tree", shrub: 'shrub "x"'}
    from_rows, from_lonlat = exports.cell_part(rows, names), exports.cell_part(rows, names, lonlat)
    assert len(from_rows) == sum(1 for row in rows if not row.near_border) > 0
    for field in ("features", "wkb", "class_name", "score", "area_m2", "image_id", "classes"):
        assert getattr(from_lonlat, field) == getattr(from_rows, field), field
    nothing = exports.cell_part([], names, lonlat_geometries([], "EPSG:32632"))
    assert len(nothing) == 0 and nothing.features == ""
