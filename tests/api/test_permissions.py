"""Every endpoint refuses the outsider: no read, no change, no hint that the object exists."""

from __future__ import annotations

import pytest
from django.urls import reverse

from detectors.models import (
    Annotation,
    Area,
    DetectionRun,
    Detector,
    DetectorClass,
    DetectorImage,
    RunStatus,
    TrainingRun,
)
from picterra.organizations.models import ApiKey, Membership
from tests.conftest import square


@pytest.fixture
def world(personas, project, ready_image):
    """One object of every kind, all in the owner's organization."""
    detector = Detector.objects.create(organization=personas.organization, project=project, name="Cars")
    detector_class = DetectorClass.objects.create(detector=detector, name="car")
    link = DetectorImage.objects.create(detector=detector, image=ready_image)
    from picterra.api.fields import parse_polygon

    area = Area.objects.create(
        detector=detector, image=ready_image, kind=Area.Kind.TRAINING, geometry=parse_polygon(square(6.601, 46.501))
    )
    annotation = Annotation.objects.create(
        detector=detector,
        image=ready_image,
        detector_class=detector_class,
        geometry=parse_polygon(square(6.6012, 46.5012, 0.0001)),
    )
    training_run = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    detection_run = DetectionRun.objects.create(detector=detector, training_run=training_run)
    detection_run.images.add(ready_image)
    api_key, _ = ApiKey.issue(personas.owner, personas.organization)
    membership = Membership.objects.get(organization=personas.organization, user=personas.member)
    return {
        "organization": personas.organization,
        "membership": membership,
        "project": project,
        "image": ready_image,
        "detector": detector,
        "detectorclass": detector_class,
        "detectorimage": link,
        "area": area,
        "annotation": annotation,
        "trainingrun": training_run,
        "detectionrun": detection_run,
        "apikey": api_key,
    }


ENDPOINTS = [
    "organization",
    "membership",
    "project",
    "image",
    "detector",
    "detectorclass",
    "detectorimage",
    "area",
    "annotation",
    "trainingrun",
    "detectionrun",
    "apikey",
]


def _ids(response) -> set[str]:
    return {row["id"] for row in response.json()["results"]}


@pytest.mark.parametrize("basename", ENDPOINTS)
def test_outsider_can_neither_list_nor_read_nor_change(basename, world, personas, client_for):
    target = world[basename]
    client = client_for(personas.outsider)
    listed = client.get(reverse(f"v1:{basename}-list"))
    assert listed.status_code == 200
    assert str(target.pk) not in _ids(listed)
    detail = reverse(f"v1:{basename}-detail", args=[target.pk])
    assert client.get(detail).status_code == 404
    assert client.patch(detail, {"name": "stolen"}, format="json").status_code in (404, 405)
    assert client.delete(detail).status_code in (404, 405)
    assert type(target).objects.filter(pk=target.pk).exists()


@pytest.mark.parametrize("basename", [b for b in ENDPOINTS if b != "apikey"])
def test_member_reads_everything_of_their_organization(basename, world, personas, client_for):
    target = world[basename]
    client = client_for(personas.member)
    assert str(target.pk) in _ids(client.get(reverse(f"v1:{basename}-list")))
    assert client.get(reverse(f"v1:{basename}-detail", args=[target.pk])).status_code == 200


@pytest.mark.parametrize("basename", ENDPOINTS)
def test_anonymous_is_refused(basename, world, client_for):
    client = client_for(None)
    assert client.get(reverse(f"v1:{basename}-list")).status_code in (401, 403)
    assert client.get(reverse(f"v1:{basename}-detail", args=[world[basename].pk])).status_code in (401, 403)


def test_outsider_cannot_create_inside_another_organization(world, personas, client_for):
    client = client_for(personas.outsider)
    attempts = {
        "project": {"organization": str(world["organization"].pk), "name": "x"},
        "detector": {"organization": str(world["organization"].pk), "name": "x"},
        "detectorclass": {"detector": str(world["detector"].pk), "name": "x"},
        "detectorimage": {"detector": str(world["detector"].pk), "image": str(world["image"].pk)},
        "area": {
            "detector": str(world["detector"].pk),
            "image": str(world["image"].pk),
            "kind": "training",
            "geometry": square(6.602, 46.502),
        },
        "annotation": {
            "detector": str(world["detector"].pk),
            "image": str(world["image"].pk),
            "geometry": square(6.602, 46.502),
        },
        "membership": {"organization": str(world["organization"].pk), "username": "oscar", "role": "owner"},
        "apikey": {"organization": str(world["organization"].pk)},
    }
    for basename, payload in attempts.items():
        response = client.post(reverse(f"v1:{basename}-list"), payload, format="json")
        assert response.status_code == 400, (basename, response.json())
        assert "does not exist" in str(response.json()), basename
    assert not Membership.objects.filter(organization=world["organization"], user=personas.outsider).exists()


def test_only_owners_delete_projects_and_manage_members(world, personas, client_for):
    member = client_for(personas.member)
    project_url = reverse("v1:project-detail", args=[world["project"].pk])
    assert member.delete(project_url).status_code == 403
    response = member.post(
        reverse("v1:membership-list"),
        {"organization": str(world["organization"].pk), "username": "oscar", "role": "member"},
        format="json",
    )
    assert response.status_code == 400
    owner = client_for(personas.owner)
    response = owner.post(
        reverse("v1:membership-list"),
        {"organization": str(world["organization"].pk), "username": "oscar", "role": "member"},
        format="json",
    )
    assert response.status_code == 201
    assert owner.delete(project_url).status_code == 204


def test_last_owner_cannot_leave(world, personas, client_for):
    owner_membership = Membership.objects.get(organization=world["organization"], user=personas.owner)
    response = client_for(personas.owner).delete(reverse("v1:membership-detail", args=[owner_membership.pk]))
    assert response.status_code == 400
    assert "at least one owner" in response.json()["detail"]
