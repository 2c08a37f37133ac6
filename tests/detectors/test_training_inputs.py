from __future__ import annotations

import pytest
from django.contrib.gis.geos import GEOSGeometry
from django.urls import reverse

from detectors.models import Annotation, Area, Detector, DetectorClass, DetectorImage, TrainingRun
from detectors.training_inputs import gather_training_inputs, training_problems, training_stats
from imagery.models import Image
from picterra.api.fields import parse_polygon
from tests.conftest import square


@pytest.fixture
def detector(personas, project, ready_image):
    detector = Detector.objects.create(organization=personas.organization, project=project, name="Trees")
    DetectorClass.objects.create(detector=detector, name="tree", position=0)
    DetectorClass.objects.create(detector=detector, name="bush", position=1)
    return detector


def draw(detector, image, kind, lon, lat, size=0.001):
    return Area.objects.create(
        detector=detector, image=image, kind=kind, geometry=parse_polygon(square(lon, lat, size))
    )


def outline(detector, image, class_name, lon, lat):
    return Annotation.objects.create(
        detector=detector,
        image=image,
        detector_class=detector.classes.get(name=class_name),
        geometry=parse_polygon(square(lon, lat, 0.00005)),
    )


def test_problems_say_what_to_do_next(detector, ready_image):
    assert training_problems(detector, gather_training_inputs(detector)) == ["Add an image to the detector first."]
    DetectorImage.objects.create(detector=detector, image=ready_image)
    assert "Draw at least one training area" in training_problems(detector, gather_training_inputs(detector))[0]
    draw(detector, ready_image, Area.Kind.TRAINING, 6.601, 46.501)
    outline(detector, ready_image, "tree", 6.605, 46.505)  # outside the training area
    assert "none of your outlines is inside" in training_problems(detector, gather_training_inputs(detector))[0]
    outline(detector, ready_image, "tree", 6.6013, 46.5013)
    assert training_problems(detector, gather_training_inputs(detector)) == []


def test_training_check_answers_what_train_would_without_starting_anything(
    detector, ready_image, personas, client_for, project
):
    """The workspace asks it as the drawing changes: the error goes once its cause has; scoped like the rest."""
    DetectorImage.objects.create(detector=detector, image=ready_image)
    url = reverse("v1:detector-training-check", args=[detector.pk])
    client = client_for(personas.owner)
    answer = client.get(url).json()
    assert "Draw at least one training area" in answer["problems"][0]
    draw(detector, ready_image, Area.Kind.TRAINING, 6.601, 46.501)
    answer = client.get(url).json()
    assert "Draw at least one training area" not in " ".join(answer["problems"])
    assert "none of your outlines is inside" in answer["problems"][0]
    # an outline crossing the area's edge is learned from (its inside part): the problem goes
    Annotation.objects.create(
        detector=detector,
        image=ready_image,
        detector_class=detector.classes.get(name="tree"),
        geometry=parse_polygon(square(6.6019, 46.5013, 0.0003)),
    )
    answer = client.get(url).json()
    assert answer["problems"] == [] and answer["stats"]["training_annotations_count"] == 1
    assert not TrainingRun.objects.exists()
    assert client_for(personas.outsider).get(url).status_code == 404


def test_inputs_are_in_the_image_crs_and_accuracy_areas_are_never_trained_on(detector, ready_image):
    DetectorImage.objects.create(detector=detector, image=ready_image)
    draw(detector, ready_image, Area.Kind.TRAINING, 6.601, 46.501, size=0.002)
    draw(detector, ready_image, Area.Kind.ACCURACY, 6.602, 46.501, size=0.001)  # overlaps the training area
    draw(detector, ready_image, Area.Kind.TESTING, 6.605, 46.505)
    outline(detector, ready_image, "tree", 6.6012, 46.5012)
    outline(detector, ready_image, "bush", 6.6025, 46.5015)  # inside the accuracy part
    [item] = gather_training_inputs(detector)
    assert item.crs == "EPSG:32632"
    minx, miny, maxx, maxy = item.training_areas[0].bounds
    assert 300_000 < minx < 400_000 and 5_000_000 < miny < 6_000_000  # UTM metres, not degrees
    training_region = item.training_areas[0]
    assert training_region.area == pytest.approx(
        GEOSGeometry(f"SRID=4326;{_wkt(6.601, 46.501, 0.002)}").transform(32632, clone=True).area * 0.75, rel=0.02
    )
    assert [c for _, c in item.training_outlines] == ["tree"]
    assert [c for _, c in item.accuracy_outlines] == ["bush"]
    assert training_stats(detector, [item]) == {
        "rasters_count": 1,
        "training_areas_count": 1,
        "assessment_areas_count": 1,
        "validation_areas_count": 1,
        "total_annotations_count": 2,
        "training_annotations_count": 1,
        "validation_annotations_count": 1,
    }


def test_images_still_processing_are_left_out(detector, project):
    pending = Image.objects.create(project=project, name="later", status=Image.Status.INGESTING)
    DetectorImage.objects.create(detector=detector, image=pending)
    assert gather_training_inputs(detector) == []
    assert "finished processing" in training_problems(detector, [])[0]


def _wkt(lon, lat, size):
    return f"POLYGON(({lon} {lat},{lon + size} {lat},{lon + size} {lat + size},{lon} {lat + size},{lon} {lat}))"
