"""Objects that two or four cells each reported in part come out once; the rest is left alone."""

from __future__ import annotations

import pytest
from django.contrib.gis.geos import GEOSGeometry
from shapely import affinity
from shapely.geometry import box

from detectors.models import DetectedObject, DetectionCell, DetectionRun, Detector, DetectorClass, TrainingRun
from workers.ml.raster_io import image_crs_to_lonlat
from workers.pipelines import merge_border_objects, near_cell_borders

CELL = 500  # a 2 x 2 grid over the 1000 px fixture image
MARGIN = 40


@pytest.fixture
def run_with_pieces(personas, ready_image):
    image = ready_image
    image.bounds = [500000.0, 5150000.0, 500300.0, 5150300.0]  # 0.3 m pixels in EPSG:32632
    image.save(update_fields=["bounds"])
    detector = Detector.objects.create(organization=personas.organization, name="Trees", created_by=personas.owner)
    tree = DetectorClass.objects.create(detector=detector, name="tree")
    version = TrainingRun.objects.create(detector=detector, version=1, status="succeeded", created_by=personas.owner)
    run = DetectionRun.objects.create(detector=detector, training_run=version, status="running")
    run.images.add(image)
    for row in range(2):
        for col in range(2):
            DetectionCell.objects.create(
                run=run, image=image, key=f"r{row}c{col}", margin=MARGIN,
                window=[col * CELL, row * CELL, CELL, CELL], pixels=CELL * CELL, status="done",
            )  # fmt: skip
    t = image.pixel_transform

    def add(cell: str, pixel_polygon) -> None:
        projected = affinity.affine_transform(pixel_polygon, [t.a, t.b, t.d, t.e, t.c, t.f])
        lonlat = image_crs_to_lonlat(projected, image.crs)
        # as the cell that found it says (detect_cell_objects)
        (near,) = near_cell_borders(DetectionCell.objects.get(run=run, key=cell), image, [projected])
        DetectedObject.objects.create(
            detection_run=run, image=image, detector_class=tree, cell=cell, score=0.9, area_m2=1.0,
            geometry=GEOSGeometry(memoryview(lonlat.wkb), srid=4326), near_border=near,
        )  # fmt: skip

    # Across the vertical border: each cell saw it through its margin, slightly differently.
    add("r0c0", box(480, 100, 512, 120))
    add("r0c1", box(484, 100, 521, 120))
    # On the corner: four views of one object, one per cell.
    add("r0c0", box(485, 485, 515, 515))
    add("r0c1", box(486, 485, 515, 514))
    add("r1c0", box(485, 486, 514, 515))
    add("r1c1", box(486, 486, 515, 515))
    # Whole in its own cell just short of the border, and its neighbour's larger view of it across it.
    add("r1c0", box(470, 800, 498, 820))
    add("r1c1", box(474, 800, 530, 820))
    # Far from every border: never a merge candidate.
    add("r0c0", box(100, 100, 120, 120))
    add("r1c1", box(800, 800, 820, 820))
    # Touching neighbours of different cells that are two objects (tiny overlap): kept apart.
    add("r0c0", box(300, 470, 320, 501))
    add("r1c0", box(300, 500, 320, 530))
    return run


@pytest.mark.django_db
def test_border_pieces_are_merged_once_and_others_are_untouched(run_with_pieces):
    run = run_with_pieces
    # every object but the two far from the borders is a merge candidate
    assert DetectedObject.objects.filter(detection_run=run, near_border=False).count() == 2
    assert merge_border_objects(run) == 1 + 3 + 1
    assert DetectedObject.objects.filter(detection_run=run).count() == 7
    areas = sorted(round(o.geometry.transform(32632, clone=True).area) for o in DetectedObject.objects.all())
    # 0.09 m2 per pixel: the split object (41 x 20 px), the corner one (30 x 30), the one seen twice
    # (60 x 20), the two far ones (20 x 20) and the two touching neighbours (20 x 31, 20 x 30).
    assert areas == sorted(round(a * 0.09) for a in (41 * 20, 30 * 30, 60 * 20, 400, 400, 20 * 31, 20 * 30))
    assert merge_border_objects(run) == 0  # running the merge again changes nothing
