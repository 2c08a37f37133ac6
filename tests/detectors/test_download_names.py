"""Exports download under names that say what they hold (detector, image, version, date), not objects.geojson;
the name is ASCII, bounded, and part of the signed link."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.urls import reverse

from detectors.exports import download_filename
from detectors.models import DetectionRun, Detector, TrainingRun
from imagery.blobstore import check_download_name
from imagery.models import Image
from imagery.storage import get_blob_store

pytestmark = pytest.mark.django_db


def _run(project, personas, images: list[Image], detector_name: str = "Olive trees: élite =1") -> DetectionRun:
    detector = Detector.objects.create(organization=project.organization, project=project, name=detector_name)
    version = TrainingRun.objects.create(detector=detector, version=3, status="succeeded", created_by=personas.owner)
    run = DetectionRun.objects.create(
        detector=detector, training_run=version, status="succeeded",
        finished_at=datetime(2026, 11, 30, 23, 50, tzinfo=UTC),
    )  # fmt: skip
    run.images.add(*images)
    store, keys = get_blob_store(), {}
    for fmt, name in (("geojson", "objects.geojson"), ("gpkg", "objects.gpkg"), ("csv", "counts.csv")):
        keys[fmt] = f"detection-runs/{run.pk}/{name}"
        store.put_stream(keys[fmt], io.BytesIO(f"{fmt} bytes".encode()))
    DetectionRun.objects.filter(pk=run.pk).update(result_keys=keys)
    run.refresh_from_db()
    return run


def _local(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def test_each_download_is_named_after_detector_image_version_and_date(personas, project, ready_image, client_for):
    ready_image.name = 'Orchard Nörth / 2024 "final"'
    ready_image.save(update_fields=["name"])
    run = _run(project, personas, [ready_image])
    client = client_for(personas.member)
    links = client.get(reverse("v1:detectionrun-downloads", args=[run.pk])).json()
    assert set(links) == {"geojson", "gpkg", "csv"}
    base = "olive-trees-elite-1-orchard-north-2024-final-v3-2026-11-30"
    expected = {"geojson": f"{base}.geojson", "gpkg": f"{base}.gpkg", "csv": f"{base}-counts.csv"}
    for fmt, url in links.items():
        response = client.get(_local(url))
        assert response.status_code == 200
        assert response["Content-Disposition"] == f'attachment; filename="{expected[fmt]}"'
        assert b"".join(response.streaming_content) == f"{fmt} bytes".encode()
        # The name is signed: a link renamed by hand (here to a header-breaking name) is refused.
        query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
        forged = urlencode({**query, "filename": 'x.geojson"\r\nSet-Cookie: a=b'})
        assert client.get(f"{urlsplit(url).path}?{forged}").status_code == 403
        renamed = urlencode({**query, "filename": "other.geojson"})
        assert client.get(f"{urlsplit(url).path}?{renamed}").status_code == 403


def test_names_stay_short_and_ascii_whatever_the_user_typed(personas, project, ready_image):
    second = Image.objects.create(project=project, name="", original_filename="ortho-2.tif", status="ready")
    run = _run(project, personas, [ready_image, second], detector_name="Ξ" * 10 + "x" * 150)
    name = download_filename(run, "geojson")
    assert name == "x" * 40 + "-2-images-v3-2026-11-30.geojson"
    assert check_download_name(name) == name and name.isascii() and len(name) < 100

    only_symbols = _run(project, personas, [second], detector_name="∆∆∆")
    assert download_filename(only_symbols, "csv") == "detector-ortho-2-v3-2026-11-30-counts.csv"


@pytest.mark.parametrize("bad", ['a"b.csv', "a\r\nb.csv", "../x.csv", "a/b.csv", "é.csv", "", ".hidden", "x" * 201])
def test_unsafe_download_names_are_never_signed(bad):
    with pytest.raises(ValueError):
        check_download_name(bad)
