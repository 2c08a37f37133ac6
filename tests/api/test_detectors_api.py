from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from detectors.models import Annotation, Area, Detector, DetectorImage
from tests.conftest import square

BOWTIE = {
    "type": "Polygon",
    "coordinates": [[[6.601, 46.501], [6.602, 46.502], [6.602, 46.501], [6.601, 46.502], [6.601, 46.501]]],
}


@pytest.fixture
def detector(personas, project, ready_image, client_for):
    response = client_for(personas.owner).post(
        reverse("v1:detector-list"),
        {"organization": str(personas.organization.pk), "project": str(project.pk), "name": "Trees"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    detector = Detector.objects.get(pk=response.json()["id"])
    DetectorImage.objects.create(detector=detector, image=ready_image)
    return detector


def test_detector_gets_spec_defaults_and_a_default_class(detector, personas, client_for):
    body = client_for(personas.member).get(reverse("v1:detector-detail", args=[detector.pk])).json()
    assert {
        k: body[k]
        for k in ("detection_type", "output_type", "training_steps", "backbone", "tile_size", "background_sample_ratio")
    } == {
        "detection_type": "count",
        "output_type": "polygon",
        "training_steps": 500,
        "backbone": "resnet34",
        "tile_size": 256,
        "background_sample_ratio": 0.25,
    }
    assert [c["name"] for c in body["classes"]] == ["object"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("training_steps", 100, "greater than or equal to 500"),
        ("training_steps", 50_000, "less than or equal to 40000"),
        ("tile_size", 300, "multiple of 32"),
        ("backbone", "vgg16", "not a valid choice"),
        ("background_sample_ratio", 1.5, "less than or equal to 1"),
        ("detection_type", "magic", "not a valid choice"),
    ],
)
def test_configuration_out_of_range_is_a_clear_400(detector, personas, client_for, field, value, message):
    response = client_for(personas.owner).patch(
        reverse("v1:detector-detail", args=[detector.pk]), {field: value}, format="json"
    )
    assert response.status_code == 400
    assert message in response.json()["detail"]
    assert response.json()["detail"].startswith(field)


def test_multiclass_detector_and_outline_of_each_class(personas, ready_image, client_for):
    client = client_for(personas.owner)
    response = client.post(
        reverse("v1:detector-list"),
        {
            "organization": str(personas.organization.pk),
            "name": "Vehicles",
            "detection_type": "count",
            "initial_classes": [{"name": "car", "color": "#ff0000"}, {"name": "truck"}, {"name": "bus"}],
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    classes = response.json()["classes"]
    assert [(c["name"], c["color"]) for c in classes] == [("car", "#FF0000"), ("truck", "#0000FF"), ("bus", "#0000FF")]
    detector_id = response.json()["id"]
    assert (
        client.post(
            reverse("v1:detectorimage-list"), {"detector": detector_id, "image": str(ready_image.pk)}, format="json"
        ).status_code
        == 201
    )
    for i, c in enumerate(classes):
        response = client.post(
            reverse("v1:annotation-list"),
            {
                "detector": detector_id,
                "image": str(ready_image.pk),
                "detector_class": c["id"],
                "geometry": square(6.601 + i * 0.001, 46.501, 0.0002),
            },
            format="json",
        )
        assert response.status_code == 201, response.json()
    listed = client.get(reverse("v1:annotation-list"), {"detector": detector_id}).json()
    assert listed["count"] == 3
    assert {a["detector_class"] for a in listed["results"]} == {c["id"] for c in classes}


@pytest.mark.parametrize(
    ("geometry", "message"),
    [
        (BOWTIE, "Self-intersection"),
        (square(6.7, 46.6), "outside the image"),
        (square(200, 46.5), "outside longitude/latitude range"),
        ({"type": "MultiPolygon", "coordinates": []}, "type 'Polygon'"),
        (
            {"type": "Polygon", "coordinates": [[[6.601, 46.501], [6.602, 46.501], [6.602, 46.502], [6.6, 46.6]]]},
            "closed",
        ),
        ({"type": "Polygon", "coordinates": [[[6.601, 46.501], [6.602, 46.501], [6.601, 46.501]]]}, "at least 4"),
        ("not json", "not valid JSON"),
        ({"type": "Polygon", "coordinates": [[["a", 1], [2, 3], [4, 5], ["a", 1]]]}, "numbers"),
    ],
)
def test_bad_geometry_is_refused_with_the_reason(detector, ready_image, personas, client_for, geometry, message):
    client = client_for(personas.member)
    for basename, extra in (("area", {"kind": "training"}), ("annotation", {})):
        response = client.post(
            reverse(f"v1:{basename}-list"),
            {"detector": str(detector.pk), "image": str(ready_image.pk), "geometry": geometry, **extra},
            format="json",
        )
        assert response.status_code == 400
        assert message in response.json()["detail"], response.json()
    assert not Area.objects.exists() and not Annotation.objects.exists()


def test_geometry_round_trips_as_geojson_in_lon_lat(detector, ready_image, personas, client_for):
    client = client_for(personas.member)
    geometry = square(6.6031, 46.5042, 0.0005)
    response = client.post(
        reverse("v1:area-list"),
        {"detector": str(detector.pk), "image": str(ready_image.pk), "kind": "accuracy", "geometry": geometry},
        format="json",
    )
    assert response.status_code == 201
    fetched = client.get(reverse("v1:area-detail", args=[response.json()["id"]])).json()
    assert fetched["geometry"]["type"] == "Polygon"
    assert fetched["geometry"]["coordinates"][0][2] == pytest.approx(geometry["coordinates"][0][2])
    inside = Area.objects.filter(geometry__contains="SRID=4326;POINT(6.6033 46.5044)")
    assert [str(a.pk) for a in inside] == [response.json()["id"]]


def test_a_stale_tab_cannot_overwrite_a_newer_edit(detector, ready_image, personas, client_for):
    """Writes sent with If-Match apply only to the version they were made from; without it, the last wins."""
    tab_a, tab_b = client_for(personas.member), client_for(personas.owner)
    created = tab_a.post(
        reverse("v1:area-list"),
        {
            "detector": str(detector.pk),
            "image": str(ready_image.pk),
            "kind": "training",
            "geometry": square(6.6031, 46.5042, 0.0005),
        },
        format="json",
    )
    url = reverse("v1:area-detail", args=[created.json()["id"]])
    loaded = created["ETag"]
    assert loaded == f'"{created.json()["updated_at"]}"' and tab_b.get(url)["ETag"] == loaded

    moved = tab_a.patch(url, {"geometry": square(6.6032, 46.5042, 0.0005)}, format="json", HTTP_IF_MATCH=loaded)
    assert moved.status_code == 200 and moved["ETag"] != loaded

    stale = tab_b.patch(url, {"geometry": square(6.6034, 46.5043, 0.0004)}, format="json", HTTP_IF_MATCH=loaded)
    assert stale.status_code == 412 and "changed elsewhere" in stale.json()["detail"]
    assert tab_b.delete(url, HTTP_IF_MATCH=loaded).status_code == 412
    assert Area.objects.get().geometry.extent[0] == pytest.approx(6.6032)  # tab A's edit stands

    fresh = tab_b.patch(url, {"kind": "accuracy"}, format="json", HTTP_IF_MATCH=moved["ETag"])
    assert fresh.status_code == 200 and Area.objects.get().kind == "accuracy"
    assert tab_a.patch(url, {"kind": "testing"}, format="json").status_code == 200  # no If-Match: last write wins
    assert tab_a.delete(url, HTTP_IF_MATCH=tab_a.get(url)["ETag"]).status_code == 204


def test_drawing_needs_the_image_attached_to_the_detector(personas, project, ready_image, client_for):
    detector = Detector.objects.create(organization=personas.organization, name="Unattached")
    response = client_for(personas.owner).post(
        reverse("v1:area-list"),
        {
            "detector": str(detector.pk),
            "image": str(ready_image.pk),
            "kind": "training",
            "geometry": square(6.601, 46.501),
        },
        format="json",
    )
    assert response.status_code == 400
    assert "Add the image to the detector" in response.json()["detail"]


def test_detector_list_query_count_does_not_grow_with_detectors(personas, client_for):
    client = client_for(personas.member)
    url = reverse("v1:detector-list")

    def count_queries() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    Detector.objects.create(organization=personas.organization, name="d0")
    baseline = count_queries()
    for i in range(1, 8):
        Detector.objects.create(organization=personas.organization, name=f"d{i}")
    assert count_queries() == baseline


def test_deleting_a_detector_removes_its_drawings_and_runs(detector, ready_image, personas, client_for):
    from detectors.models import DetectionRun, RunStatus, TrainingRun

    run = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    DetectionRun.objects.create(detector=detector, training_run=run)
    client = client_for(personas.member)
    client.post(
        reverse("v1:area-list"),
        {
            "detector": str(detector.pk),
            "image": str(ready_image.pk),
            "kind": "training",
            "geometry": square(6.601, 46.501),
        },
        format="json",
    )
    assert client.delete(reverse("v1:detector-detail", args=[detector.pk])).status_code == 204
    assert not Area.objects.exists() and not TrainingRun.objects.exists() and not DetectionRun.objects.exists()
    ready_image.refresh_from_db()  # the image itself stays
