"""``detectors.results.insert_objects``: the objects a detection stores (``NewObject`` tuples) arrive exactly as
the ORM would write them (on PostgreSQL by COPY, elsewhere by bulk_create)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.contrib.gis.geos import GEOSGeometry
from django.db import connection
from shapely.geometry import box

from detectors.models import DetectedObject, DetectionRun, Detector, DetectorClass, RunStatus, TrainingRun
from detectors.results import NewObject, insert_objects, lonlat_geometry


@pytest.mark.django_db
@pytest.mark.parametrize("vendor", ["postgresql", "other"])
def test_inserted_objects_keep_every_field_and_their_exact_geometry(personas, ready_image, vendor, monkeypatch):
    if vendor == "other":  # the ORM's bulk_create, as on SpatiaLite
        from detectors import results

        monkeypatch.setattr(
            results, "connection", SimpleNamespace(vendor="spatialite", in_atomic_block=True, cursor=connection.cursor)
        )
    detector = Detector.objects.create(organization=personas.organization, name="trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree")
    version = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    run = DetectionRun.objects.create(detector=detector, training_run=version)
    shapes = [box(6.1 + i * 1e-5, 46.2, 6.1 + i * 1e-5 + 7e-6, 46.2 + 3.3e-6 * (1 + i % 3)) for i in range(2500)]
    rows = []
    for i, shape in enumerate(shapes):
        geometry, area = lonlat_geometry(shape)
        rows.append(NewObject(None, run.pk, ready_image.pk, tree.pk, f"r0c{i % 4}", geometry.hexewkb.decode(), i / 2500,
                              area))  # fmt: skip
    # a training run's prediction: the other run column
    predicted = NewObject(version.pk, None, ready_image.pk, tree.pk, "", lonlat_geometry(shapes[0])[0].hexewkb.decode(),
                          1.0, 1.5)  # fmt: skip

    insert_objects([*rows, predicted])

    stored = list(DetectedObject.objects.filter(detection_run=run).order_by("score"))
    assert len(stored) == len(rows)
    for row, got in zip(rows, stored, strict=True):
        assert (got.image_id, got.detector_class_id, got.cell, got.training_run_id) == (
            ready_image.pk, tree.pk, row.cell, None
        )  # fmt: skip
        assert got.score == pytest.approx(row.score) and got.area_m2 == pytest.approx(row.area_m2)
        assert got.geometry.srid == 4326 and got.geometry.equals_exact(GEOSGeometry(row.geometry), 1e-12)
    assert DetectedObject.objects.filter(training_run=version, detection_run=None).count() == 1
    # The spatial index answers for them, as the map's tiles and the border merge ask it.
    inside = GEOSGeometry(box(6.1, 46.2, 6.1 + 9.5e-5, 46.21).wkt, srid=4326)
    assert DetectedObject.objects.filter(detection_run=run, geometry__intersects=inside).count() == 10
    insert_objects([])  # nothing to insert is not an error


@pytest.mark.django_db
def test_stored_geometries_are_the_rows_geos_geometries_as_hex_ewkb(personas, ready_image):
    """``stored_geometries`` gives, per polygon, exactly the hex EWKB and area the GEOS objects it used to build
    gave, in a metric CRS and a geographic one; rows holding them insert the same geometries."""
    from pyproj import Geod
    from shapely.geometry import Point

    from detectors.results import stored_geometries
    from workers.ml.raster_io import image_crs_to_lonlat_many

    ring = Point(500_010, 5_200_010).buffer(6).difference(Point(500_010, 5_200_010).buffer(2))  # with a hole
    utm = [box(500_000 + i * 3.7, 5_200_000, 500_002.5 + i * 3.7, 5_200_001.3 + i % 4) for i in range(40)] + [ring]
    degrees = [box(6.1 + i * 1e-5, 46.2, 6.1 + i * 1e-5 + 7e-6, 46.2 + 3e-6) for i in range(20)]
    geod = Geod(ellps="WGS84")
    for shapes, crs in ((utm, "EPSG:32632"), (degrees, "EPSG:4326")):
        lonlats = image_crs_to_lonlat_many(shapes, crs)
        for original, lonlat, (geometry, area) in zip(shapes, lonlats, stored_geometries(shapes, crs), strict=True):
            assert geometry == GEOSGeometry(memoryview(lonlat.wkb), srid=4326).hexewkb.decode()
            assert area == (original.area if crs == "EPSG:32632" else abs(geod.geometry_area_perimeter(lonlat)[0]))
    assert stored_geometries([], "EPSG:32632") == []

    detector = Detector.objects.create(organization=personas.organization, name="trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree")
    version = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    run = DetectionRun.objects.create(detector=detector, training_run=version)
    stored = stored_geometries(utm, "EPSG:32632")
    rows = [NewObject(None, run.pk, ready_image.pk, tree.pk, "r0c0", geometry, i / 100, area)
            for i, (geometry, area) in enumerate(stored)]  # fmt: skip
    insert_objects(rows)
    got = list(DetectedObject.objects.filter(detection_run=run).order_by("score"))
    assert [o.geometry.hexewkb.decode() for o in got] == [g for g, _ in stored]


@pytest.mark.django_db
def test_object_table_has_no_index_another_one_already_serves():
    """Every index is paid on each of the millions of inserts a detection makes: none may be a leading part of
    another (that one answers the same lookups), while each run column still leads one, so a run's objects
    and a run's cascade delete are found by index."""
    from django.db import connection

    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, DetectedObject._meta.db_table)
    btrees = [tuple(c["columns"]) for c in constraints.values() if c["index"] and c["type"] != "gist" and c["columns"]]
    for columns in btrees:
        wider = [other for other in btrees if len(other) > len(columns) and other[: len(columns)] == columns]
        assert not wider, f"index on {columns} is redundant with {wider}"
    leading = {columns[0] for columns in btrees}
    assert {"detection_run_id", "training_run_id", "image_id"} <= leading
