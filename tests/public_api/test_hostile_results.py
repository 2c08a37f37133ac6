"""Operation results sign only what the server wrote; the public API's temporary files expire.

A class name is chosen by a user and ends up in operation results: shaped like an internal reference
(`blob:<another organization's key>`), it must come back as the same text, never as a working link.
"""

from __future__ import annotations

import importlib
import io
import json
import re
import uuid
from datetime import timedelta
from urllib.parse import unquote, urlsplit

import pytest
from django.apps import apps
from django.utils import timezone
from rest_framework.test import APIClient

from detectors.models import DetectedObject, DetectionRun, Detector, DetectorClass, RunStatus, TrainingRun
from imagery.models import Image
from imagery.storage import get_blob_store
from picterra.public_api.cleanup import expire_public_api_temporaries
from picterra.public_api.models import Operation, TemporaryFile, VectorLayer
from tests.conftest import square

BASE = "/public/api/v2/"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def keyed(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw)
    return client


def signed_key(url: str) -> str:
    """The blob key a signed local-store URL gives access to."""
    path = urlsplit(url).path
    assert "/blobs/" in path, url
    return unquote(path.split("/blobs/", 1)[1])


def fetch(client: APIClient, url: str) -> bytes:
    parts = urlsplit(url)
    response = client.get(f"{parts.path}?{parts.query}")
    assert response.status_code == 200, url
    return b"".join(response.streaming_content)


def every_string(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from every_string(v)
    elif isinstance(value, list):
        for v in value:
            yield from every_string(v)


@pytest.fixture
def victim_key(db) -> str:
    """A real blob of another organization: what a hostile class name points at."""
    key = f"images/{uuid.uuid4()}/cog-v1.tif"
    get_blob_store().put_stream(key, io.BytesIO(b"other organization's pixels"))
    return key


@pytest.fixture
def detected(personas, ready_image):
    """A finished detection whose classes are named like internal references and path tricks."""
    detector = Detector.objects.create(organization=personas.organization, name="d", created_by=personas.owner)
    version = TrainingRun.objects.create(detector=detector, version=1, status=RunStatus.SUCCEEDED)
    run = DetectionRun.objects.create(detector=detector, training_run=version, status=RunStatus.SUCCEEDED)
    run.images.add(ready_image)
    return detector, run, ready_image


def test_a_class_named_like_a_blob_reference_comes_back_as_its_name(personas, owner_key, detected, victim_key):
    detector, run, image = detected
    hostile = [f"blob:{victim_key}", "blob:../../var/secret_key", "../../x/\r\n/..", "blob:", "=1+1"]
    classes = [DetectorClass.objects.create(detector=detector, name=name, position=i) for i, name in enumerate(hostile)]
    DetectedObject.objects.create(
        detection_run=run, image=image, detector_class=classes[0], geometry=_polygon(), score=0.9, area_m2=1.0
    )
    operation = Operation.objects.create(
        organization=personas.organization, kind=Operation.Kind.DETECTION, detection_run=run
    )
    client = keyed(owner_key)

    for _ in range(2):  # when it settles, and read again later
        body = client.get(BASE + f"operations/{operation.pk}/").json()
        assert body["status"] == "success"
        results = body["results"]
        assert [c["class"]["name"] for c in results["by_class"]] == hostile
        # Exactly the places the server wrote are links, and each is to a file of this run, named by ids.
        links = [results["url"], *(c["result"]["url"] for c in results["by_class"])]
        keys = [signed_key(url) for url in links]
        assert keys[0] == f"public-api/detection-runs/{run.pk}/all.geojson"
        assert keys[1:] == [f"public-api/detection-runs/{run.pk}/class-{c.pk}.geojson" for c in classes]
        assert not any(victim_key in s or "secret_key" in s for s in every_string(results) if "/blobs/" in s)
        assert sum("/blobs/" in s for s in every_string(body)) == len(links)
    first = json.loads(fetch(client, results["by_class"][0]["result"]["url"]))
    assert first["type"] == "MultiPolygon" and len(first["coordinates"]) == 1

    stored = Operation.objects.get(pk=operation.pk)  # results hold no reference; blob_refs hold ids only
    assert stored.results["url"] is None and all(c["result"]["url"] is None for c in stored.results["by_class"])
    assert len(stored.blob_refs) == len(links)
    for ref in stored.blob_refs:
        assert re.fullmatch(rf"public-api/detection-runs/{UUID}/(all|class-{UUID})\.geojson", ref["key"])


def test_strings_in_stored_results_are_never_signed(personas, owner_key, victim_key):
    """Whatever an operation's results hold, only its blob_refs become links."""
    results = {"url": f"blob:{victim_key}", "note": f"blob:{victim_key}", "by_class": [{"class": {"name": "x"}}]}
    operation = Operation.objects.create(
        organization=personas.organization,
        kind=Operation.Kind.ANNOTATIONS,
        status=Operation.Status.SUCCESS,
        results=results,
    )
    body = keyed(owner_key).get(BASE + f"operations/{operation.pk}/").json()
    assert body["results"] == results


def test_stored_results_of_before_are_migrated_to_blob_refs(personas, owner_key, victim_key):
    """Legacy "blob:" strings move to blob_refs where the server wrote them; anywhere else they stay text."""
    migration = importlib.import_module("picterra.public_api.migrations.0002_blob_refs_and_temporary_files")
    legacy = {
        "url": "blob:public-api/detection-runs/r/all.geojson",
        "by_class": [
            {
                "class": {"id": "c", "name": f"blob:{victim_key}"},
                "result": {"url": "blob:public-api/detection-runs/r/class-c.geojson", "vector_layer_id": "v"},
            }
        ],
    }
    download = {"download_url": "blob:public-api/vector-layers/l/abc.geojson", "expiration": 3600}
    detection = Operation.objects.create(
        organization=personas.organization, kind=Operation.Kind.DETECTION, status="success", results=legacy
    )
    downloaded = Operation.objects.create(
        organization=personas.organization,
        kind=Operation.Kind.VECTOR_LAYER_DOWNLOAD,
        status="success",
        results=download,
    )
    migration.move_blob_strings_to_refs(apps, None)
    migration.record_existing_temporaries(apps, None)

    detection.refresh_from_db()
    assert detection.results["url"] is None
    assert detection.results["by_class"][0]["class"]["name"] == f"blob:{victim_key}"
    assert {r["key"] for r in detection.blob_refs} == {
        "public-api/detection-runs/r/all.geojson",
        "public-api/detection-runs/r/class-c.geojson",
    }
    client = keyed(owner_key)
    body = client.get(BASE + f"operations/{detection.pk}/").json()["results"]
    assert signed_key(body["url"]) == "public-api/detection-runs/r/all.geojson"
    assert signed_key(body["by_class"][0]["result"]["url"]) == "public-api/detection-runs/r/class-c.geojson"
    assert body["by_class"][0]["class"]["name"] == f"blob:{victim_key}"
    body = client.get(BASE + f"operations/{downloaded.pk}/").json()["results"]
    assert signed_key(body["download_url"]) == "public-api/vector-layers/l/abc.geojson"
    # The download written before expires like new ones.
    assert TemporaryFile.objects.filter(operation=downloaded, kind=TemporaryFile.Kind.DOWNLOAD).count() == 1


# --- temporary files expire ----------------------------------------------------------------------------------------


def _polygon():
    from django.contrib.gis.geos import GEOSGeometry

    return GEOSGeometry(json.dumps(square(6.601, 46.501)), srid=4326)


def public_blobs() -> set[str]:
    return set(get_blob_store().list("public-api/"))


def test_a_vector_layer_download_expires(personas, owner_key, detected):
    detector, run, image = detected
    tree = DetectorClass.objects.create(detector=detector, name="../../tree")
    DetectedObject.objects.create(
        detection_run=run, image=image, detector_class=tree, geometry=_polygon(), score=0.9, area_m2=1.0
    )
    layer = VectorLayer.objects.create(image=image, name="trees", detection_run=run, detector_class=tree)
    client = keyed(owner_key)
    # what earlier tests left in the shared store (orphan uploads) goes first: it would expire below too
    expire_public_api_temporaries(timezone.now() + timedelta(days=2))
    before = public_blobs()
    reference = client.post(BASE + f"vector_layers/{layer.pk}/download/").json()
    url = client.get(BASE + f"operations/{reference['operation_id']}/").json()["results"]["download_url"]
    written = public_blobs() - before
    assert written == {signed_key(url)}
    assert re.fullmatch(rf"public-api/vector-layers/{layer.pk}/[0-9a-f]{{32}}\.geojson", signed_key(url))
    feature = json.loads(fetch(client, url))["features"][0]
    assert feature["properties"]["class_name"] == "../../tree"

    assert expire_public_api_temporaries(timezone.now() + timedelta(hours=1))["downloads"] == 0
    assert public_blobs() - before == written  # not yet
    result = expire_public_api_temporaries(timezone.now() + timedelta(days=2))
    assert result["downloads"] == 1
    assert public_blobs() == before  # the download's file is gone, nothing else
    assert not TemporaryFile.objects.exists()
    # The operation stays readable; it no longer links to a file that is gone.
    body = client.get(BASE + f"operations/{reference['operation_id']}/").json()
    assert body["status"] == "success" and body["results"]["download_url"] is None


def test_geojson_upload_tickets_expire_and_orphans_go(personas, owner_key, ready_image):
    client = keyed(owner_key)
    store = get_blob_store()
    # A file left by a ticket from before tickets had rows: nothing accounts for it.
    orphan = f"public-api/uploads/{personas.organization.pk}/detection_areas/{uuid.uuid4()}.geojson"
    store.put_stream(orphan, io.BytesIO(b"{}"))
    before = public_blobs()
    ticket = client.post(BASE + f"rasters/{ready_image.pk}/detection_areas/upload/file/").json()
    key = signed_key(ticket["upload_url"])
    collection = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": square(6.602, 46.502)}]}
    parts = urlsplit(ticket["upload_url"])
    response = client.generic(
        "PUT", f"{parts.path}?{parts.query}", json.dumps(collection).encode(), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert public_blobs() == before | {key}
    commit = client.post(BASE + f"rasters/{ready_image.pk}/detection_areas/upload/{ticket['upload_id']}/commit/")
    assert client.get(BASE + f"operations/{commit.json()['operation_id']}/").json()["status"] == "success"

    result = expire_public_api_temporaries(timezone.now())
    assert result["orphan_uploads"] == 1 and result["geojson_uploads"] == 0
    assert public_blobs() == (before - {orphan}) | {key}  # the live ticket's file stays
    result = expire_public_api_temporaries(timezone.now() + timedelta(days=3))
    assert result["geojson_uploads"] == 1
    assert public_blobs() == before - {orphan}
    assert not TemporaryFile.objects.exists()


def test_raster_uploads_never_committed_expire_with_their_rows_and_blobs(personas, owner_key):
    client = keyed(owner_key)
    store = get_blob_store()
    others = set(store.list("images/"))
    abandoned = client.post(BASE + "rasters/upload/file/", {"name": "never.tif"}, format="json").json()
    committed = client.post(BASE + "rasters/upload/file/", {"name": "done.tif"}, format="json").json()
    for ticket in (abandoned, committed):  # both sent some bytes; only one was committed
        store.put_stream(signed_key(ticket["upload_url"]), io.BytesIO(b"II*\x00 not much"))
    assert client.post(BASE + f"rasters/{committed['raster_id']}/commit/").status_code == 201
    uploaded = {signed_key(abandoned["upload_url"]), signed_key(committed["upload_url"])}
    assert set(store.list("images/")) == others | uploaded

    assert expire_public_api_temporaries(timezone.now() + timedelta(hours=1))["rasters_removed"] == 0
    assert Image.objects.filter(pk=abandoned["raster_id"]).exists()
    result = expire_public_api_temporaries(timezone.now() + timedelta(days=3))
    assert result["rasters_removed"] == 1
    assert not Image.objects.filter(pk=abandoned["raster_id"]).exists()
    assert Image.objects.filter(pk=committed["raster_id"]).exists()
    assert set(store.list("images/")) == others | {signed_key(committed["upload_url"])}
    assert client.get(BASE + f"rasters/{abandoned['raster_id']}/").status_code == 404
    assert not TemporaryFile.objects.exists()
