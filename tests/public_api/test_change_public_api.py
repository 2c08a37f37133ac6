"""The public API's change detectors in-process: the kind, the second date of a training raster and of a run,
another organization's raster as a second date (404, as any other id of theirs), refusals in plain words."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from detectors.models import DetectionRun, Detector, DetectorClass, DetectorImage, RunStatus, TrainingRun
from imagery.models import Image
from picterra.organizations.models import Project

BASE = "/public/api/v2/"


def keyed(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


@pytest.fixture(autouse=True)
def _fresh_throttle_counts():
    cache.clear()
    yield
    cache.clear()


def runnable(detector: Detector) -> Detector:
    """A class and a succeeded version: detection is refused or planned before any weights are read."""
    DetectorClass.objects.create(detector=detector, name="object")
    now = timezone.now()
    TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.SUCCEEDED, config={"classes": ["object"]},
        started_at=now, finished_at=now,
    )
    return detector


@pytest.fixture
def theirs(personas, ready_image) -> Image:
    """A raster of another organization (its existence must not leak)."""
    project = Project.objects.create(organization=personas.outsider_organization, name="Theirs")
    return Image.objects.create(project=project, name="theirs.tif", status=Image.Status.READY)


def test_a_change_detector_is_created_and_read_with_its_kind(owner_key):
    client = keyed(owner_key)
    created = client.post(BASE + "detectors/", {"name": "New roofs", "kind": "change"}, format="json")
    assert created.status_code == 201 and created.json()["kind"] == "change"
    detector_id = created.json()["id"]
    assert client.get(BASE + f"detectors/{detector_id}/").json()["kind"] == "change"
    plain = client.post(BASE + "detectors/", {"name": "Trees"}, format="json").json()
    assert plain["kind"] == "single"
    edited = client.put(BASE + f"detectors/{detector_id}/", {"kind": "single"}, format="json")
    assert edited.status_code == 400 and "chosen when it is created" in edited.json()["detail"]
    bad = client.post(BASE + "detectors/", {"name": "x", "kind": "triple"}, format="json")
    assert bad.status_code == 400


def test_another_organizations_raster_as_second_date_is_not_found(personas, owner_key, ready_image, theirs):
    client = keyed(owner_key)
    detector = runnable(Detector.objects.create(organization=personas.organization, name="d", kind="change"))
    attach = client.post(
        BASE + f"detectors/{detector.pk}/training_rasters/",
        {"raster_id": str(ready_image.pk), "secondary_raster_id": str(theirs.pk)},
        format="json",
    )
    assert attach.status_code == 404 and not DetectorImage.objects.exists()
    run = client.post(
        BASE + f"detectors/{detector.pk}/run/",
        {"raster_id": str(ready_image.pk), "secondary_raster_id": str(theirs.pk)},
        format="json",
    )
    assert run.status_code == 404 and run.json() == {"detail": f"No raster with id {theirs.pk}."}
    assert not DetectionRun.objects.exists()


def test_a_run_needs_a_second_date_exactly_for_a_change_detector(personas, owner_key, ready_image):
    client = keyed(owner_key)
    change = runnable(Detector.objects.create(organization=personas.organization, name="c", kind="change"))
    single = runnable(Detector.objects.create(organization=personas.organization, name="s"))
    second = Image.objects.create(project=ready_image.project, name="later.tif", status=Image.Status.UPLOADED)
    answers = {
        "This is a change detector: choose the second image too": client.post(
            BASE + f"detectors/{change.pk}/run/", {"raster_id": str(ready_image.pk)}, format="json"
        ),
        "This detector looks at one image at a time": client.post(
            BASE + f"detectors/{single.pk}/run/",
            {"raster_id": str(ready_image.pk), "secondary_raster_id": str(second.pk)},
            format="json",
        ),
        "Wait until this image has finished processing: later.tif": client.post(
            BASE + f"detectors/{change.pk}/run/",
            {"raster_id": str(ready_image.pk), "secondary_raster_id": str(second.pk)},
            format="json",
        ),
    }
    for start, response in answers.items():
        assert response.status_code == 400 and response.json()["detail"].startswith(start), response.json()
    assert not DetectionRun.objects.exists()
    refused = client.post(
        BASE + f"detectors/{single.pk}/training_rasters/",
        {"raster_id": str(ready_image.pk), "secondary_raster_id": str(second.pk)},
        format="json",
    )
    assert refused.status_code == 400
    assert refused.json()["errors"]["secondary_raster_id"][0].startswith("Only a change detector compares two images")


def test_a_training_raster_attached_by_the_client_gets_its_second_date_later(personas, owner_key, ready_image):
    client = keyed(owner_key)
    detector = Detector.objects.create(organization=personas.organization, name="c", kind="change")
    url = BASE + f"detectors/{detector.pk}/training_rasters/"
    assert client.post(url, {"raster_id": str(ready_image.pk)}, format="json").status_code == 201
    later = Image.objects.create(project=ready_image.project, name="later.tif", status=Image.Status.UPLOADED)
    response = client.post(url, {"raster_id": str(ready_image.pk), "secondary_raster_id": str(later.pk)}, format="json")
    assert response.status_code == 201
    assert response.json() == {"raster_id": str(ready_image.pk), "secondary_raster_id": str(later.pk)}
    assert DetectorImage.objects.get(detector=detector).second_image_id == later.pk
    again = client.post(url, {"raster_id": str(ready_image.pk)}, format="json")
    assert again.status_code == 400 and "already attached" in again.json()["detail"]
