"""Access-control holes found by trying the platform as an attacker (issue #14), one test each.

The persona who matters here is `dual`: one user who belongs to two organizations (A: Acme Mapping, B: Other Org).
Whatever that user can see with a session, an API key scoped to A must still see only A, and nothing of A may be
run over B's images (A's members would then read what was found in B).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.gis.geos import GEOSGeometry
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from detectors.models import DetectionCell, DetectionRun, Detector, DetectorClass, DetectorImage, RunStatus, TrainingRun
from imagery.models import Image
from imagery.tile_views import clear_tile_auth_cache
from picterra.organizations.models import ApiKey, Membership, Project
from tests.conftest import FOOTPRINT_WKT

# The `ready_image` footprint in EPSG:32632 (UTM 32N), so tiles and detection cells can be planned from it.
UTM_BOUNDS = [315846.0, 5152402.0, 316146.0, 5152702.0]


@pytest.fixture(autouse=True)
def _fresh_tile_auth_cache():
    clear_tile_auth_cache()
    yield
    clear_tile_auth_cache()


def make_image(project: Project, name: str) -> Image:
    return Image.objects.create(
        project=project,
        name=name,
        status=Image.Status.READY,
        width=1000,
        height=1000,
        band_count=3,
        dtype="uint8",
        crs="EPSG:32632",
        gsd=0.3,
        bounds=UTM_BOUNDS,
        footprint=GEOSGeometry(FOOTPRINT_WKT, srid=4326),
        display_bands=[1, 2, 3],
        rescale=[[0, 255]] * 3,
        cog_key=f"images/{name}/cog.tif",
        cog_version="v1",
    )


@pytest.fixture
def two_orgs(personas, project):
    """`dual` (the owner of A) also joins B, which has an image of its own; A has a trained detector."""
    dual = personas.owner
    Membership.objects.create(organization=personas.outsider_organization, user=dual, role=Membership.Role.MEMBER)
    project_b = Project.objects.create(organization=personas.outsider_organization, name="B's fields")
    detector_a = Detector.objects.create(organization=personas.organization, project=project, name="A's cars")
    DetectorClass.objects.create(detector=detector_a, name="car")
    version = TrainingRun.objects.create(detector=detector_a, version=1, status=RunStatus.SUCCEEDED)
    return {
        "dual": dual,
        "image_a": make_image(project, "a-ortho"),
        "image_b": make_image(project_b, "b-ortho"),
        "detector_a": detector_a,
        "version": version,
    }


# --- sign-in and key guessing ---------------------------------------------------------------------------------------


@pytest.fixture
def quick_users(db, settings):
    """Users with a fast hasher: the throttle is what is tested, not PBKDF2."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    users = get_user_model().objects
    return users.create_user("mallory-target", password="right-one"), users.create_user("other", password="pw-other")


def sign_in(username: str, password: str, address: str = "203.0.113.7", path: str = "/accounts/login/"):
    return Client(REMOTE_ADDR=address).post(path, {"username": username, "password": password})


def test_sign_in_answers_429_after_ten_wrong_passwords_for_a_username(quick_users):
    for _ in range(10):
        assert sign_in("mallory-target", "guess").status_code == 200  # the form again, with its error
    refused = sign_in("mallory-target", "guess")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 900
    assert "Too many failed sign-in attempts" in refused.content.decode()
    # Even the right password is not checked now, from anywhere, on any sign-in form (the admin's too).
    assert sign_in("mallory-target", "right-one").status_code == 429
    assert sign_in("mallory-target", "right-one", address="198.51.100.9").status_code == 429
    assert sign_in("mallory-target", "right-one", path="/admin/login/").status_code == 429
    # Another account, from the same address, is not held back.
    assert sign_in("other", "pw-other").status_code == 302


def test_sign_in_is_throttled_per_address_across_usernames(quick_users, settings):
    settings.AUTH_FAILURE_LIMIT_PER_IP = 3
    for name in ("alice", "bob", "carol"):
        assert sign_in(name, "guess").status_code == 200
    assert sign_in("other", "pw-other").status_code == 429
    assert sign_in("other", "pw-other", address="198.51.100.9").status_code == 302


def test_a_successful_sign_in_clears_its_username_count(quick_users):
    for _ in range(9):
        sign_in("mallory-target", "guess")
    assert sign_in("mallory-target", "right-one", address="198.51.100.9").status_code == 302
    assert sign_in("mallory-target", "guess").status_code == 200  # counting starts again


def test_wrong_api_keys_from_one_address_get_429(two_orgs, personas, settings):
    settings.AUTH_FAILURE_LIMIT_PER_IP = 3
    _, raw = ApiKey.issue(two_orgs["dual"], personas.organization)
    guesser = APIClient(REMOTE_ADDR="203.0.113.7")
    for attempt in range(3):
        assert guesser.get(reverse("v1:project-list"), HTTP_X_API_KEY=f"guess-{attempt}").status_code == 401
    refused = guesser.get(reverse("v1:project-list"), HTTP_X_API_KEY="guess-4")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= settings.AUTH_FAILURE_WINDOW_S
    assert "wrong or revoked API key" in refused.json()["detail"]
    # While blocked, no key is looked up from that address, not even a right one; other addresses are unaffected.
    assert guesser.get(reverse("v1:project-list"), HTTP_X_API_KEY=raw).status_code == 429
    tile = f"/tiles/images/{two_orgs['image_a'].pk}/v1/0/0/0.png"
    blocked_tile = Client(REMOTE_ADDR="203.0.113.7").get(tile, HTTP_X_API_KEY="guess-5")
    assert blocked_tile.status_code == 429 and int(blocked_tile["Retry-After"]) > 0
    other = APIClient(REMOTE_ADDR="198.51.100.9")
    assert other.get(reverse("v1:project-list"), HTTP_X_API_KEY=raw).status_code == 200


# --- API keys -------------------------------------------------------------------------------------------------------


def test_an_api_key_cannot_create_or_revoke_keys(personas, client_for):
    key, raw = ApiKey.issue(personas.owner, personas.organization)
    sibling, _ = ApiKey.issue(personas.owner, personas.organization)
    script = APIClient()
    created = script.post(
        reverse("v1:apikey-list"), {"organization": str(personas.organization.pk)}, HTTP_X_API_KEY=raw, format="json"
    )
    assert created.status_code == 403
    assert "web app" in created.json()["detail"]
    assert ApiKey.objects.filter(user=personas.owner).count() == 2
    revoked = script.delete(reverse("v1:apikey-detail", args=[sibling.pk]), HTTP_X_API_KEY=raw)
    assert revoked.status_code == 403
    sibling.refresh_from_db()
    assert sibling.revoked_at is None
    # Listing still works with the key; the signed-in session still manages keys.
    assert script.get(reverse("v1:apikey-list"), HTTP_X_API_KEY=raw).status_code == 200
    session = client_for(personas.owner)
    assert session.post(reverse("v1:apikey-list"), {"organization": str(personas.organization.pk)}).status_code == 201
    assert session.delete(reverse("v1:apikey-detail", args=[key.pk])).status_code == 204


# --- a key's organization -------------------------------------------------------------------------------------------


def test_a_key_of_organization_a_reads_no_tiles_of_organization_b(two_orgs, personas, client_for):
    image_b = two_orgs["image_b"]
    _, key_a = ApiKey.issue(two_orgs["dual"], personas.organization)
    _, key_b = ApiKey.issue(two_orgs["dual"], personas.outsider_organization)
    tilejson = reverse("v1:image-tilejson", args=[image_b.pk])
    # A tile far from the image: answered from the stored bounds (transparent PNG) without reading any pixels.
    tile = f"/tiles/images/{image_b.pk}/v1/3/0/0.png"
    # B's own key (checked first, so its outcome sits in the tile permission cache) and the session see it.
    assert APIClient().get(tilejson, HTTP_X_API_KEY=key_b).status_code == 200
    assert Client().get(tile, HTTP_X_API_KEY=key_b).status_code == 200
    assert client_for(two_orgs["dual"]).get(tilejson).status_code == 200
    # A's key does not, although its user belongs to B.
    assert APIClient().get(tilejson, HTTP_X_API_KEY=key_a).status_code == 404
    assert Client().get(tile, HTTP_X_API_KEY=key_a).status_code == 404


# --- nothing of A runs over B's images ------------------------------------------------------------------------------


def test_detection_refuses_images_of_another_organization(two_orgs, client_for):
    client = client_for(two_orgs["dual"])
    detect = reverse("v1:detector-detect", args=[two_orgs["detector_a"].pk])
    refused = client.post(detect, {"images": [str(two_orgs["image_b"].pk)]}, format="json")
    assert refused.status_code == 400
    assert "b-ortho" in refused.json()["detail"] and "another organization" in refused.json()["detail"]
    assert not DetectionRun.objects.exists()
    # Mixed lists are refused whole; the detector's own images are fine.
    mixed = [str(two_orgs["image_a"].pk), str(two_orgs["image_b"].pk)]
    assert client.post(detect, {"images": mixed}, format="json").status_code == 400
    assert client.post(detect, {"images": [str(two_orgs["image_a"].pk)]}, format="json").status_code == 201


def test_training_refuses_a_detector_attached_to_another_organizations_image(two_orgs, client_for):
    # Only an old row or the admin can make this link (the API refuses it): training must not read it.
    DetectorImage.objects.create(detector=two_orgs["detector_a"], image=two_orgs["image_b"])
    refused = client_for(two_orgs["dual"]).post(reverse("v1:detector-train", args=[two_orgs["detector_a"].pk]))
    assert refused.status_code == 400
    assert "another organization" in refused.json()["detail"] and "b-ortho" in refused.json()["detail"]
    assert not TrainingRun.objects.exclude(pk=two_orgs["version"].pk).exists()


def test_retry_refuses_a_detection_over_another_organizations_image(two_orgs, client_for):
    run = DetectionRun.objects.create(
        detector=two_orgs["detector_a"], training_run=two_orgs["version"], status=RunStatus.PARTIAL, cells_failed=1
    )
    run.images.add(two_orgs["image_b"])
    DetectionCell.objects.create(
        run=run, image=two_orgs["image_b"], key="r0c0", window=[0, 0, 1000, 1000], margin=0, status="failed"
    )
    refused = client_for(two_orgs["dual"]).post(reverse("v1:detectionrun-retry-failed-cells", args=[run.pk]))
    assert refused.status_code == 400 and "another organization" in refused.json()["detail"]
    run.refresh_from_db()
    assert run.status == RunStatus.PARTIAL
    assert DetectionCell.objects.get(run=run).status == "failed"


def test_public_api_detect_refuses_a_raster_of_another_organization(two_orgs, personas):
    _, key_a = ApiKey.issue(two_orgs["dual"], personas.organization)
    response = APIClient().post(
        reverse("public:detector-run", args=[two_orgs["detector_a"].pk]),
        {"raster_id": str(two_orgs["image_b"].pk)},
        HTTP_X_API_KEY=key_a,
        format="json",
    )
    assert response.status_code in (400, 404)
    assert not DetectionRun.objects.exists()
