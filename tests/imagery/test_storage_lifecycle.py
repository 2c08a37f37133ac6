"""Storage follows the data: deleting a project, image, detector or organization frees its blobs, durably.

Each test builds two organizations' worth of blobs in a private local store (an image ingested by the real
pipeline: original + COG; a training run's weights and model card; a detection run's exports and public API
results; a public API vector layer and upload ticket), deletes through the API or the admin, runs the purge,
and counts blobs: the deleted rows' prefixes are empty and every other blob is still there.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from io import BytesIO, StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from rest_framework.test import APIClient

from detectors.models import (
    DetectionRun,
    Detector,
    DetectorClass,
    TrainingRun,
    detection_run_prefix,
    public_api_detection_run_prefix,
    training_run_prefix,
)
from imagery.blobstore import BlobStore, LocalBlobStore
from imagery.models import BlobPurge, Image
from imagery.purge import delete_with_blobs, find_orphans, purge_pending_blobs, record_purges
from imagery.storage import get_blob_store, image_cog_key, image_original_key, image_prefix
from picterra.organizations.models import ApiKey, Organization, Project
from picterra.public_api.models import VectorLayer
from tests.conftest import wait_for

HOUR = 3600


@pytest.fixture
def store(settings, tmp_path) -> Iterator[BlobStore]:
    """A blob store of this test's own, so counting "everything else" counts only what this test wrote."""
    settings.BLOBSTORE_URL = str(tmp_path / "blobs")
    get_blob_store.cache_clear()
    yield get_blob_store()
    get_blob_store.cache_clear()


def put(store: BlobStore, key: str, data: bytes = b"x" * 100) -> str:
    store.put_stream(key, BytesIO(data))
    return key


@dataclass
class World:
    """One organization's rows and the blob prefixes each of them owns."""

    organization: Organization
    project: Project
    image: Image
    detector: Detector
    training_run: TrainingRun
    detection_run: DetectionRun
    layer: VectorLayer
    prefixes: dict[str, list[str]] = field(default_factory=dict)

    def all_prefixes(self) -> list[str]:
        return [prefix for prefixes in self.prefixes.values() for prefix in prefixes]


def build_world(store: BlobStore, organization: Organization, image: Image | None = None) -> World:
    """Rows and blobs as the platform writes them (same key functions); ``image`` may come from real ingest."""
    project = image.project if image else Project.objects.create(organization=organization, name="Fields")
    if image is None:
        image = Image.objects.create(project=project, name="ortho.tif", status=Image.Status.READY)
        image.original_key = put(store, image_original_key(image.pk, "ortho.tif"))
        image.cog_key = put(store, image_cog_key(image.pk, "v1"))
        image.save()
    detector = Detector.objects.create(organization=organization, project=project, name="Trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree")
    training_run = TrainingRun.objects.create(detector=detector, version=1, status="succeeded")
    attempt = f"{training_run_prefix(training_run.pk)}{uuid.uuid4().hex[:12]}/"
    training_run.weights_key = put(store, attempt + "model.safetensors", b"w" * 1000)
    training_run.model_card_key = put(store, attempt + "model.json")
    training_run.save()
    detection_run = DetectionRun.objects.create(detector=detector, training_run=training_run, status="succeeded")
    detection_run.images.add(image)
    detection_run.result_keys = {
        fmt: put(store, detection_run_prefix(detection_run.pk) + name)
        for fmt, name in (("geojson", "objects.geojson"), ("gpkg", "objects.gpkg"), ("csv", "counts.csv"))
    }
    detection_run.save()
    put(store, f"{public_api_detection_run_prefix(detection_run.pk)}class-{tree.pk}.geojson")
    layer = VectorLayer.objects.create(image=image, name="uploaded")
    layer.blob_key = put(store, f"public-api/vector-layers/{layer.pk}.geojson")
    layer.save()
    put(store, f"public-api/vector-layers/{layer.pk}/{uuid.uuid4().hex}.geojson")  # a download written for it
    put(store, f"public-api/uploads/{organization.pk}/annotations/{uuid.uuid4().hex}.geojson")
    prefixes = {
        "image": [image_prefix(image.pk), f"public-api/vector-layers/{layer.pk}"],
        "detector": [
            training_run_prefix(training_run.pk),
            detection_run_prefix(detection_run.pk),
            public_api_detection_run_prefix(detection_run.pk),
        ],
        "organization": [f"public-api/uploads/{organization.pk}/"],
    }
    return World(organization, project, image, detector, training_run, detection_run, layer, prefixes)


def count(store: BlobStore, prefixes: list[str] | None = None) -> int:
    if prefixes is None:
        return len(list(store.list("")))
    return sum(len(list(store.list(prefix))) for prefix in prefixes)


@pytest.fixture
def worlds(store, personas, ingest_file, sample_geotiff):
    """(ours, theirs): the owner's organization, with an image made by the real ingest, and another one."""
    ours = build_world(store, personas.organization, ingest_file(sample_geotiff.path))
    theirs = build_world(store, personas.outsider_organization)
    assert len(list(store.list(f"{image_prefix(ours.image.pk)}cog-"))) == 1  # the real ingest wrote its COG
    assert store.exists(ours.image.original_key)
    for world in (ours, theirs):
        for kind, prefixes in world.prefixes.items():
            for prefix in prefixes:
                assert count(store, [prefix]) > 0, (kind, prefix)
    return ours, theirs


def api(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


def assert_purged(store: BlobStore, gone: list[str], kept: list[str], total_before: int) -> None:
    """After the purge: nothing under ``gone``, everything else (``kept`` included) exactly as before."""
    removed = count(store, gone)
    assert removed > 0, "the blobs must still be there until the purge runs"
    kept_before = count(store, kept)
    assert purge_pending_blobs() == {"blob_prefixes_purged": len(gone), "blob_purges_failed": 0}
    assert count(store, gone) == 0
    assert count(store, kept) == kept_before > 0
    assert count(store) == total_before - removed
    assert not BlobPurge.objects.exists()


def test_deleting_a_project_through_the_api_purges_its_images_blobs(store, worlds, personas):
    ours, theirs = worlds
    total = count(store)
    response = api(personas.owner).delete(f"/api/v1/projects/{ours.project.pk}/")
    assert response.status_code == 204, response.content
    assert not Image.objects.filter(pk=ours.image.pk).exists()
    # Recorded with the delete, before any worker ran.
    assert sorted(BlobPurge.objects.values_list("prefix", flat=True)) == sorted(ours.prefixes["image"])
    # The detector belongs to the organization, not to the project: it and its runs' files stay.
    kept = ours.prefixes["detector"] + ours.prefixes["organization"] + theirs.all_prefixes()
    assert_purged(store, ours.prefixes["image"], kept, total)


def test_deleting_a_detector_through_the_api_purges_its_runs_blobs(store, worlds, personas):
    ours, theirs = worlds
    total = count(store)
    response = api(personas.member).delete(f"/api/v1/detectors/{ours.detector.pk}/")
    assert response.status_code == 204, response.content
    assert not TrainingRun.objects.filter(detector_id=ours.detector.pk).exists()
    kept = ours.prefixes["image"] + ours.prefixes["organization"] + theirs.all_prefixes()
    assert_purged(store, ours.prefixes["detector"], kept, total)


def test_deleting_an_image_through_the_api_purges_its_blobs(store, worlds, personas):
    ours, theirs = worlds
    total = count(store)
    response = api(personas.member).delete(f"/api/v1/images/{ours.image.pk}/")
    assert response.status_code == 204, response.content
    kept = ours.prefixes["detector"] + ours.prefixes["organization"] + theirs.all_prefixes()
    assert_purged(store, ours.prefixes["image"], kept, total)


def test_deleting_an_organization_through_the_api_purges_everything_it_owned(store, worlds, personas):
    ours, theirs = worlds
    total = count(store)
    assert api(personas.member).delete(f"/api/v1/organizations/{ours.organization.pk}/").status_code == 403
    assert count(store) == total and not BlobPurge.objects.exists()
    response = api(personas.owner).delete(f"/api/v1/organizations/{ours.organization.pk}/")
    assert response.status_code == 204, response.content
    assert_purged(store, ours.all_prefixes(), theirs.all_prefixes(), total)
    assert count(store) == count(store, theirs.all_prefixes())


def test_deleting_organizations_in_the_admin_purges_their_blobs(store, worlds, personas):
    """The admin's bulk action goes through QuerySet.delete(), which no Model.delete() override would see."""
    ours, theirs = worlds
    total = count(store)
    admin = get_user_model().objects.create_superuser("root", password="pw-root")
    client = Client()  # a browser's form post
    client.force_login(admin)
    response = client.post(
        "/admin/organizations/organization/",
        {"action": "delete_selected", "index": 0, "_selected_action": [str(ours.organization.pk)], "post": "yes"},
    )
    assert response.status_code == 302, response.content[:500]
    assert not Organization.objects.filter(pk=ours.organization.pk).exists()
    assert_purged(store, ours.all_prefixes(), theirs.all_prefixes(), total)


def test_deleting_in_the_public_api_purges_blobs(store, worlds, personas):
    ours, theirs = worlds
    total = count(store)
    _, raw = ApiKey.issue(personas.owner, personas.organization)
    client = APIClient()
    assert client.delete(f"/public/api/v2/rasters/{ours.image.pk}/", HTTP_X_API_KEY=raw).status_code == 204
    assert client.delete(f"/public/api/v2/detectors/{ours.detector.pk}/", HTTP_X_API_KEY=raw).status_code == 204
    gone = ours.prefixes["image"] + ours.prefixes["detector"]
    assert_purged(store, gone, ours.prefixes["organization"] + theirs.all_prefixes(), total)


def test_the_purge_is_recorded_in_the_deletes_transaction(store, worlds):
    ours, _ = worlds
    with pytest.raises(RuntimeError), transaction.atomic():
        delete_with_blobs(ours.project)
        assert BlobPurge.objects.count() == 2
        raise RuntimeError("the request failed after the delete")
    assert Image.objects.filter(pk=ours.image.pk).exists()
    assert not BlobPurge.objects.exists()
    assert purge_pending_blobs() == {"blob_prefixes_purged": 0, "blob_purges_failed": 0}
    assert count(store, ours.prefixes["image"]) > 0


def test_a_failing_purge_stays_recorded_and_succeeds_on_the_next_attempt(store, worlds, monkeypatch):
    ours, theirs = worlds
    delete_with_blobs(ours.image)
    real_delete_prefix = store.delete_prefix
    calls: list[str] = []

    def flaky_delete_prefix(prefix: str) -> None:
        calls.append(prefix)
        if len(calls) == 1:
            raise ConnectionError("storage unavailable")
        real_delete_prefix(prefix)

    monkeypatch.setattr(store, "delete_prefix", flaky_delete_prefix)
    assert purge_pending_blobs() == {"blob_prefixes_purged": 1, "blob_purges_failed": 1}
    failed = BlobPurge.objects.get()
    assert failed.prefix == calls[0]
    assert (failed.attempts, failed.last_error) == (1, "ConnectionError: storage unavailable")
    assert count(store, [failed.prefix]) > 0
    assert purge_pending_blobs() == {"blob_prefixes_purged": 1, "blob_purges_failed": 0}
    assert count(store, ours.prefixes["image"]) == 0
    assert not BlobPurge.objects.exists()
    assert count(store, theirs.all_prefixes()) > 0


def test_a_prefix_that_covers_a_whole_namespace_is_never_purged(store, worlds):
    ours, theirs = worlds
    total = count(store)
    for prefix in ("images/", "images", "public-api/", "public-api/vector-layers/", "training-runs/", "x"):
        with pytest.raises(ValueError):
            record_purges([prefix])
    BlobPurge.objects.create(prefix="images/")  # a bad row, however it got there
    assert purge_pending_blobs() == {"blob_prefixes_purged": 0, "blob_purges_failed": 1}
    assert "whole blob namespace" in BlobPurge.objects.get().last_error
    assert count(store) == total


def _age(store: LocalBlobStore, key: str, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(store.path(key), (then, then))


def test_blob_orphans_finds_planted_orphans_and_leaves_live_blobs(store, worlds):
    ours, theirs = worlds
    for key in store.list(""):
        _age(store, key, 2 * HOUR)
    live = count(store)
    orphans = [
        put(store, f"images/{uuid.uuid4()}/cog-v1.tif", b"o" * 500),  # its image was deleted long ago
        put(store, f"training-runs/{uuid.uuid4()}/abc/model.safetensors", b"o" * 300),
        put(store, "images/NOT-AN-ID/original/x.tif", b"o" * 200),
        put(store, f"images/{str(ours.image.pk).upper()}/cog.tif", b"o" * 100),  # not its canonical id
        put(store, f"public-api/vector-layers/{uuid.uuid4()}.geojson", b"o" * 50),
    ]
    for key in orphans:
        _age(store, key, 2 * HOUR)
    young = put(store, f"images/{uuid.uuid4()}/original/uploading.tif")  # an upload whose row is not committed yet
    outside = put(store, "notes/readme.txt")
    _age(store, outside, 2 * HOUR)

    report = find_orphans(store)
    assert sorted(i.key for i in report.orphan_blobs) == sorted(orphans)
    assert [i.key for i in report.too_young] == [young]
    assert [i.key for i in report.unrecognised] == [outside]
    assert report.owned == live

    out = StringIO()
    call_command("blob_orphans", stdout=out)
    assert "orphaned in total: 5 blobs, 1,150 bytes" in out.getvalue()
    assert all(store.exists(key) for key in orphans)  # a report only

    out = StringIO()
    call_command("blob_orphans", "--delete", stdout=out)
    assert "deleted: 5 blobs, 1,150 bytes" in out.getvalue()
    assert not any(store.exists(key) for key in orphans)
    assert store.exists(young) and store.exists(outside)
    assert count(store) == live + 2
    assert count(store, ours.all_prefixes() + theirs.all_prefixes()) == live

    call_command("blob_orphans", "--delete", "--min-age", "0", stdout=StringIO())
    assert not store.exists(young) and store.exists(outside)


def test_a_real_worker_purges_after_the_delete_commits(store, settings, celery_workers, personas):
    """The queue path end to end: the delete commits, its on-commit message reaches a worker, blobs go."""
    worker_store = settings.BLOBSTORE_URL
    celery_workers.start(BLOBSTORE_URL=worker_store)
    ours = build_world(store, personas.organization)
    theirs = build_world(store, personas.outsider_organization)
    total = count(store)
    response = api(personas.owner).delete(f"/api/v1/projects/{ours.project.pk}/")
    assert response.status_code == 204, response.content
    wait_for(lambda: not BlobPurge.objects.exists(), timeout=60)
    assert count(store, ours.prefixes["image"]) == 0
    assert count(store) == total - 4  # original, COG, the layer's file and its download
    assert count(store, theirs.all_prefixes()) > 0


def test_purge_deletes_the_prefix_on_gcs(settings, gcs_store_url, personas):
    """The same purge against the GCS emulator (the real google-cloud-storage client)."""
    settings.BLOBSTORE_URL = gcs_store_url
    get_blob_store.cache_clear()
    try:
        store = get_blob_store()
        ours = build_world(store, personas.organization)
        theirs = build_world(store, personas.outsider_organization)
        total = count(store)
        delete_with_blobs(ours.organization)
        assert_purged(store, ours.all_prefixes(), theirs.all_prefixes(), total)
        infos = list(store.list_info(""))
        assert [i.key for i in infos] == list(store.list(""))
        assert all(i.size > 0 and abs(i.modified - time.time()) < HOUR for i in infos)
        orphan = put(store, f"images/{uuid.uuid4()}/cog-v1.tif")
        report = find_orphans(store, min_age_s=0, now=time.time() + 60)
        assert [i.key for i in report.orphan_blobs] == [orphan]
    finally:
        get_blob_store.cache_clear()
