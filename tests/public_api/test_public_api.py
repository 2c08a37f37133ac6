"""The public API in-process: conventions, API keys, throttling, and the authorisation matrix."""

from __future__ import annotations

import io
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.gis.geos import Point
from django.core.cache import cache
from django.core.management import call_command
from rest_framework.test import APIClient

from detectors.models import Area, DetectionRun, Detector, DetectorClass, DetectorImage, RunStatus, TrainingRun
from picterra.api.fields import parse_polygon
from picterra.organizations.models import ApiKey, Membership, Organization, Project
from picterra.public_api.models import Marker, Operation, RasterDetectionArea, VectorLayer
from tests.conftest import square

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


# --- conventions ---------------------------------------------------------------------------------------------------


def test_detector_status_codes_and_string_ids(personas, owner_key):
    client = keyed(owner_key)
    created = client.post(
        BASE + "detectors/",
        {"name": "Cars", "configuration": {"detection_type": "count", "training_steps": 600, "tile_size": 256}},
        format="json",
    )
    assert created.status_code == 201 and isinstance(created.json()["id"], str)
    detector_id = created.json()["id"]
    edited = client.put(BASE + f"detectors/{detector_id}/", {"configuration": {}}, format="json")
    assert edited.status_code == 204
    fetched = client.get(BASE + f"detectors/{detector_id}/")
    assert fetched.status_code == 200 and fetched.json()["configuration"]["training_steps"] == 600
    assert client.post(BASE + "folders/", {"name": "F"}, format="json").status_code == 201


def test_paths_without_slash_or_unknown_answer_json_404_never_a_redirect(owner_key):
    client = keyed(owner_key)
    for method in ("get", "post"):
        response = getattr(client, method)(BASE + "rasters")
        assert response.status_code == 404 and "end with a slash" in response.json()["detail"]
    assert client.get(BASE + "nothing/here/").json()["detail"].startswith("No such endpoint")
    assert client.get(BASE + "rasters/not-a-uuid/").status_code == 404


def test_bad_input_is_a_json_400(personas, owner_key, ready_image):
    client = keyed(owner_key)
    response = client.post(BASE + "detectors/", {"configuration": {"backbone": "vgg"}}, format="json")
    assert response.status_code == 400 and "backbone" in response.json()["detail"]
    response = client.post(BASE + f"rasters/{ready_image.pk}/commit/")
    assert response.status_code == 200 or response.status_code == 201  # already uploaded: idempotent
    response = client.post(BASE + "rasters/upload/file/", {"name": "x", "folder_id": str(uuid.uuid4())}, format="json")
    assert response.status_code == 404
    response = client.post(BASE + "rasters/upload/file/", {"name": "x", "cloud_coverage": 150}, format="json")
    assert response.status_code == 400 and "cloud_coverage" in response.json()["detail"]


def test_commit_before_upload_says_so(owner_key):
    client = keyed(owner_key)
    started = client.post(BASE + "rasters/upload/file/", {"name": "late.tif", "multispectral": False}, format="json")
    assert started.status_code == 201 and "/blobs/" in started.json()["upload_url"]
    response = client.post(BASE + f"rasters/{started.json()['raster_id']}/commit/")
    assert response.status_code == 400 and "PUT it to the upload URL" in response.json()["detail"]


def test_operations_reflect_the_run_and_stay_readable(personas, owner_key):
    detector = Detector.objects.create(organization=personas.organization, name="d")
    run = TrainingRun.objects.create(detector=detector, version=1)
    operation = Operation.objects.create(
        organization=personas.organization, kind=Operation.Kind.TRAINING, training_run=run
    )
    client = keyed(owner_key)
    url = BASE + f"operations/{operation.pk}/"
    assert client.get(url).json()["status"] == "running"
    assert client.get(url).json()["finished_at"] is None
    TrainingRun.objects.filter(pk=run.pk).update(status=RunStatus.FAILED, error="The worker stopped responding.")
    body = client.get(url).json()
    assert body["status"] == "failed" and body["errors"] == ["The worker stopped responding."]
    # the poll that ends the operation already says when, and later polls say the same
    operation.refresh_from_db()
    assert body["finished_at"] == operation.finished_at.isoformat()
    assert client.get(url).json()["finished_at"] == body["finished_at"]
    run.delete()  # the operation outlives what it followed
    assert client.get(url).json()["status"] == "failed"


# --- API keys ------------------------------------------------------------------------------------------------------


def test_create_api_key_command_creates_user_and_organization(db):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", "robot", stdout=out, stderr=err)
    raw = out.getvalue().strip().splitlines()[-1]
    user = get_user_model().objects.get(username="robot")
    organization = Organization.objects.get(memberships__user=user, memberships__role="owner")
    key = ApiKey.objects.get(user=user)
    assert key.organization == organization and raw not in key.key_hash and key.prefix == raw[:8]
    me = keyed(raw).get(BASE + "users/me/")
    assert me.status_code == 200 and me.json()["organization_id"] == str(organization.pk)
    key.refresh_from_db()
    assert key.last_used_at is not None


def test_create_api_key_command_for_an_existing_member(personas):
    out = io.StringIO()
    call_command("create_api_key", personas.member.username, stdout=out, stderr=io.StringIO())
    raw = out.getvalue().strip().splitlines()[-1]
    assert keyed(raw).get(BASE + "users/me/").json()["organization_id"] == str(personas.organization.pk)
    assert Organization.objects.count() == 2


def test_keys_of_removed_users_stop_working(personas):
    _, member_key = ApiKey.issue(personas.member, personas.organization)
    assert keyed(member_key).get(BASE + "rasters/").status_code == 200
    Membership.objects.filter(user=personas.member).delete()  # removed from the organization
    response = keyed(member_key).get(BASE + "rasters/")
    assert response.status_code == 401 and response.json()["detail"] == "Invalid or revoked API key."
    _, outsider_key = ApiKey.issue(personas.outsider, personas.outsider_organization)
    personas.outsider.delete()
    assert keyed(outsider_key).get(BASE + "rasters/").status_code == 401


def test_requests_without_a_key_are_refused_in_json(db):
    response = APIClient().get(BASE + "rasters/")
    assert response.status_code == 401 and "detail" in response.json()
    assert keyed("nope").get(BASE + "rasters/").status_code == 401


def test_keys_are_throttled_with_retry_after(personas, owner_key, outsider_key, settings):
    settings.API_KEY_THROTTLE_RATE = "3/minute"
    client = keyed(owner_key)
    assert [client.get(BASE + "users/me/").status_code for _ in range(3)] == [200, 200, 200]
    refused = client.get(BASE + "users/me/")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert "throttled" in refused.json()["detail"].lower()
    assert client.get("/api/v1/projects/").status_code == 429  # the same key on our own API
    assert keyed(outsider_key).get(BASE + "users/me/").status_code == 200  # counted per key


# --- authorisation matrix ------------------------------------------------------------------------------------------


@pytest.fixture
def others_world(personas, project, ready_image):
    """One object of every kind the public API names, all in the owner's organization."""
    detector = Detector.objects.create(organization=personas.organization, project=project, name="Cars")
    detector_class = DetectorClass.objects.create(detector=detector, name="car")
    DetectorImage.objects.create(detector=detector, image=ready_image)
    training_run = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    detection_run = DetectionRun.objects.create(detector=detector, training_run=training_run)
    layer = VectorLayer.objects.create(image=ready_image, name="layer", detection_run=detection_run)
    marker = Marker.objects.create(image=ready_image, point=Point(6.605, 46.505, srid=4326))
    RasterDetectionArea.objects.create(image=ready_image, geometry=parse_polygon(square(6.601, 46.501)))
    operation = Operation.objects.create(
        organization=personas.organization, kind=Operation.Kind.TRAINING, training_run=training_run
    )
    return {
        "raster": str(ready_image.pk),
        "folder": str(project.pk),
        "detector": str(detector.pk),
        "class": str(detector_class.pk),
        "layer": str(layer.pk),
        "marker": str(marker.pk),
        "operation": str(operation.pk),
        "upload": str(uuid.uuid4()),
    }


def matrix(ids: dict) -> list[tuple[str, str, dict | None]]:
    r, d, f, vl, op, up = ids["raster"], ids["detector"], ids["folder"], ids["layer"], ids["operation"], ids["upload"]
    return [
        ("get", f"operations/{op}/", None),
        ("get", f"rasters/{r}/", None),
        ("put", f"rasters/{r}/", {"name": "stolen"}),
        ("delete", f"rasters/{r}/", None),
        ("post", f"rasters/{r}/commit/", None),
        ("get", f"rasters/{r}/download/", None),
        ("post", f"rasters/{r}/detection_areas/upload/file/", None),
        ("post", f"rasters/{r}/detection_areas/upload/{up}/commit/", None),
        ("delete", f"rasters/{r}/detection_areas/", None),
        ("get", f"rasters/{r}/markers/", None),
        ("post", f"rasters/{r}/markers/", {"marker": {"type": "Point", "coordinates": [6.6, 46.5]}, "text": "x"}),
        ("get", f"rasters/{r}/vector_layers/", None),
        ("post", f"vector_layers/{r}/upload/", None),
        ("post", f"vector_layers/{r}/upload/{up}/commit/", {}),
        ("get", f"vector_layers/{vl}/", None),
        ("put", f"vector_layers/{vl}/", {"name": "stolen"}),
        ("delete", f"vector_layers/{vl}/", None),
        ("post", f"vector_layers/{vl}/download/", None),
        ("get", f"detectors/{d}/", None),
        ("put", f"detectors/{d}/", {"name": "stolen", "configuration": {}}),
        ("delete", f"detectors/{d}/", None),
        ("post", f"detectors/{d}/train/", None),
        ("post", f"detectors/{d}/run/", {"raster_id": r}),
        ("post", f"detectors/{d}/dataset_recommendation/", None),
        ("get", f"detectors/{d}/training_rasters/", None),
        ("post", f"detectors/{d}/training_rasters/", {"raster_id": r}),
        ("get", f"detectors/{d}/training_rasters/{r}/markers/", None),
        ("post", f"detectors/{d}/training_rasters/{r}/outline/upload/bulk/", None),
        ("post", f"detectors/{d}/training_rasters/{r}/outline/upload/bulk/{up}/commit/", {}),
        ("get", f"folders/{f}/detectors/", None),
        ("get", f"authorization/grants/folder/{f}/", None),
        ("post", f"authorization/grants/detector/{d}/", {"grants": []}),
    ]


def test_another_organization_can_neither_read_nor_change_nor_learn_of_objects(
    personas, others_world, owner_key, outsider_key
):
    outsider = keyed(outsider_key)
    before = {model: model.objects.count() for model in (Detector, Project, VectorLayer, Marker, Area, Operation)}
    for method, path, body in matrix(others_world):
        response = getattr(outsider, method)(BASE + path, body, format="json")
        assert response.status_code == 404, (method, path, response.status_code, response.content[:200])
        assert "detail" in response.json()
        # Another organization's id reads exactly like an id that never existed.
        for value in others_world.values():
            assert value not in response.content.decode() or value in path
    after = {model: model.objects.count() for model in before}
    assert after == before
    assert Detector.objects.get(pk=others_world["detector"]).name == "Cars"
    assert RasterDetectionArea.objects.count() == 1

    # Their own lists never show the owner's objects, and filters cannot reach them either.
    for path in ("rasters/", "detectors/", "folders/", f"rasters/?folder={others_world['folder']}"):
        listed = outsider.get(BASE + path).json()
        assert listed["results"] == [] and listed["count"] == 0, path
    # A raster of another organization cannot be added to one's own detector or run on.
    own = outsider.post(BASE + "detectors/", {"configuration": {}}, format="json").json()["id"]
    attach = outsider.post(BASE + f"detectors/{own}/training_rasters/", {"raster_id": others_world["raster"]})
    assert attach.status_code == 404
    assert outsider.post(BASE + f"detectors/{own}/run/", {"raster_id": others_world["raster"]}).status_code == 404


def test_dataset_recommendation_answers_the_versions_suggestions_or_a_plain_400(personas, project, ready_image,
                                                                                owner_key):
    owner = keyed(owner_key)
    detector = Detector.objects.create(organization=personas.organization, project=project, name="Trees")
    untrained = owner.post(BASE + f"detectors/{detector.pk}/dataset_recommendation/")
    assert untrained.status_code == 400
    assert untrained.json()["detail"] == "Train the detector first: it has no successfully trained version yet."
    polygon = {"type": "Polygon", "coordinates": [[[6.6, 46.5], [6.601, 46.5], [6.601, 46.501], [6.6, 46.5]]]}
    reason = "Many faint candidates, like the objects it missed in the accuracy areas."
    suggestion = {"type": "Feature", "geometry": polygon,
                  "properties": {"rank": 1, "reason": reason, "score": 0.8, "image": str(ready_image.pk)}}
    TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED,
                               suggestions={"type": "FeatureCollection", "features": [suggestion]})
    TrainingRun.objects.create(detector=detector, version=2, status=RunStatus.FAILED)  # not a version to use
    answer = owner.post(BASE + f"detectors/{detector.pk}/dataset_recommendation/")
    assert answer.status_code == 201
    operation = owner.get(BASE + f"operations/{answer.json()['operation_id']}/").json()
    assert operation["status"] == "success" and operation["type"] == "dataset_recommendation"
    assert operation["results"] == {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": polygon,
        "properties": {"rank": 1, "reason": reason, "score": 0.8, "raster_id": str(ready_image.pk)},
    }]}


def test_the_matrix_is_meaningful_for_the_owner(personas, others_world, owner_key):
    """The same requests by the owner are not 404s (reads, at least), so the matrix tests scoping."""
    owner = keyed(owner_key)
    for method, path, _body in matrix(others_world):
        if method == "get":
            assert owner.get(BASE + path).status_code == 200, path


def test_a_key_sees_only_its_own_organization(personas, others_world):
    """A user in two organizations: a key of one of them does not reach the other's objects."""
    Membership.objects.create(organization=personas.outsider_organization, user=personas.owner)
    _, key_of_other = ApiKey.issue(personas.owner, personas.outsider_organization)
    client = keyed(key_of_other)
    assert client.get(BASE + f"rasters/{others_world['raster']}/").status_code == 404
    assert client.get(BASE + "rasters/").json()["count"] == 0
    # Our own API applies the same rule to keys (the web app's session still sees every organization).
    assert client.get(f"/api/v1/images/{others_world['raster']}/").status_code == 404
    assert client.get("/api/v1/detectors/").json()["count"] == 0
    attach = client.post(
        "/api/v1/detector-images/", {"detector": others_world["detector"], "image": others_world["raster"]}
    )
    assert attach.status_code == 400 and "does not exist" in attach.json()["detail"]
    session = APIClient()
    session.force_login(personas.owner)
    assert session.get("/api/v1/detectors/").json()["count"] == 1
