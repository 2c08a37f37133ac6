"""``detectors.results.insert_objects``: the rows a detection stores arrive exactly as the ORM would write them
(on PostgreSQL by COPY, elsewhere by bulk_create)."""

from __future__ import annotations

import pytest
from django.contrib.gis.geos import GEOSGeometry
from shapely.geometry import box

from detectors.models import DetectedObject, DetectionRun, Detector, DetectorClass, RunStatus, TrainingRun
from detectors.results import insert_objects, lonlat_geometry


@pytest.mark.django_db
def test_inserted_objects_keep_every_field_and_their_exact_geometry(personas, ready_image):
    detector = Detector.objects.create(organization=personas.organization, name="trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree")
    version = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    run = DetectionRun.objects.create(detector=detector, training_run=version)
    shapes = [box(6.1 + i * 1e-5, 46.2, 6.1 + i * 1e-5 + 7e-6, 46.2 + 3.3e-6 * (1 + i % 3)) for i in range(2500)]
    rows = []
    for i, shape in enumerate(shapes):
        geometry, area = lonlat_geometry(shape)
        rows.append(
            DetectedObject(
                detection_run=run,
                image=ready_image,
                detector_class=tree,
                cell=f"r0c{i % 4}",
                geometry=geometry,
                score=i / 2500,
                area_m2=area,
            )
        )
    predicted = DetectedObject(  # a training run's prediction: the other run column
        training_run=version, image=ready_image, detector_class=tree, geometry=lonlat_geometry(shapes[0])[0], score=1,
        area_m2=1.5,
    )  # fmt: skip

    insert_objects([*rows, predicted])

    stored = list(DetectedObject.objects.filter(detection_run=run).order_by("score"))
    assert len(stored) == len(rows)
    for row, got in zip(rows, stored, strict=True):
        assert (got.image_id, got.detector_class_id, got.cell, got.training_run_id) == (
            ready_image.pk, tree.pk, row.cell, None
        )  # fmt: skip
        assert got.score == pytest.approx(row.score) and got.area_m2 == pytest.approx(row.area_m2)
        assert got.geometry.srid == 4326 and got.geometry.equals_exact(row.geometry, 1e-12)
    assert DetectedObject.objects.filter(training_run=version, detection_run=None).count() == 1
    # The spatial index answers for them, as the map's tiles and the border merge ask it.
    inside = GEOSGeometry(box(6.1, 46.2, 6.1 + 9.5e-5, 46.21).wkt, srid=4326)
    assert DetectedObject.objects.filter(detection_run=run, geometry__intersects=inside).count() == 10
    insert_objects([])  # nothing to insert is not an error
