"""Large uploads through signed URLs, and the bad-input corpus: each file ends in a documented state."""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import numpy as np
import pytest
import rasterio
from affine import Affine
from django.urls import reverse

from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def start(client, project, filename="big.tif"):
    response = client.post(reverse("v1:image-uploads"), {"project": str(project.pk), "filename": filename})
    assert response.status_code == 201, response.json()
    return response.json()


def put_and_commit(client, ticket, data: bytes):
    put = client.generic("PUT", path_of(ticket["upload_url"]), data)
    assert put.status_code == 200
    return client.post(reverse("v1:image-commit", args=[ticket["image"]["id"]]))


def test_signed_url_upload_start_put_commit_ingest(personas, project, client_for, tmp_path):
    client = client_for(personas.member)
    ticket = start(client, project, "ortho.tif")
    image_id = ticket["image"]["id"]
    assert ticket["image"]["status"] == "uploading"
    early = client.post(reverse("v1:image-commit", args=[image_id]))
    assert early.status_code == 400 and "No file has been received" in early.json()["detail"]

    data = write_sample_geotiff(tmp_path / "ortho.tif", size=300, trees=3).path.read_bytes()
    committed = put_and_commit(client, ticket, data)
    assert committed.status_code == 200
    assert committed.json()["status"] == "uploaded" and committed.json()["file_size"] == len(data)
    assert ingest_image(image_id) == Image.Status.READY
    # Committing again is harmless; a new upload URL is refused once the file is in.
    assert client.post(reverse("v1:image-commit", args=[image_id])).json()["status"] == "ready"
    again = client.post(reverse("v1:image-renew-upload-url", args=[image_id]))
    assert again.status_code == 400


def test_upload_url_can_be_renewed_to_retry(personas, project, client_for):
    client = client_for(personas.owner)
    ticket = start(client, project)
    renewed = client.post(reverse("v1:image-renew-upload-url", args=[ticket["image"]["id"]]))
    assert renewed.status_code == 200
    assert urlsplit(renewed.json()["upload_url"]).path == urlsplit(ticket["upload_url"]).path
    assert (
        client_for(personas.outsider)
        .post(reverse("v1:image-renew-upload-url", args=[ticket["image"]["id"]]))
        .status_code
        == 404
    )


@pytest.mark.django_db(transaction=True)
def test_interrupted_upload_keeps_nothing_and_can_be_retried(live_server, personas, project, client_for):
    client = client_for(personas.owner)
    ticket = start(client, project)
    key = Image.objects.get(pk=ticket["image"]["id"]).original_key
    host, port = urlsplit(live_server.url).hostname, urlsplit(live_server.url).port
    with socket.create_connection((host, port), timeout=10) as conn:
        conn.sendall(
            f"PUT {path_of(ticket['upload_url'])} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000000\r\n\r\n".encode()
            + b"\0" * 100_000
        )
        conn.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := conn.recv(4096):
            reply += chunk
        reply = reply.decode(errors="replace")
    assert " 400 " in reply.splitlines()[0]
    assert "interrupted" in reply
    assert not get_blob_store().exists(key)
    assert client.post(reverse("v1:image-commit", args=[ticket["image"]["id"]])).status_code == 400
    assert put_and_commit(client, ticket, b"\1" * 2000).status_code == 200


def _geotiff(path, width, height, count=1, dtype="uint8", transform=None, crs="EPSG:32632", **extra):
    transform = transform or Affine(1, 0, 316000, 0, -1, 5158000)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs=crs,
        transform=transform,
        **extra,
    ) as dst:
        if width * height <= 1_000_000:
            dst.write(np.ones((count, height, width), dtype=dtype))
    return path


def _ingest_file(client, project, path):
    with open(path, "rb") as fh:
        response = client.post(reverse("v1:image-list"), {"project": str(project.pk), "file": fh}, format="multipart")
    assert response.status_code == 201, response.json()
    status = ingest_image(response.json()["id"])
    return Image.objects.get(pk=response.json()["id"]), status


@pytest.mark.parametrize(
    ("make", "status", "message"),
    [
        (
            lambda p: _geotiff(
                p, 1_000_000, 1_000_000, tiled=True, blockxsize=256, blockysize=256, compress="deflate", SPARSE_OK=True
            ),
            "failed",
            "more than the",
        ),
        (lambda p: _geotiff(p, 64, 64, transform=Affine(0.5, 0.2, 316000, 0.1, -0.5, 5158000)), "failed", "rotated"),
        (lambda p: _geotiff(p, 1, 1, count=3), "ready", ""),
        (lambda p: _geotiff(p, 64, 48, count=1, dtype="float32"), "ready", ""),
        (lambda p: _geotiff(p, 40, 40, count=4, dtype="uint16", nodata=0), "ready", ""),
    ],
    ids=["claims-1M-by-1M", "rotated", "one-pixel", "float32-single-band", "uint16-4-bands-nodata"],
)
def test_bad_input_corpus(personas, project, ready_image, client_for, tmp_path, make, status, message):
    path = make(tmp_path / "input.tif")
    image, final = _ingest_file(client_for(personas.owner), project, path)
    assert final == status
    assert message in image.error
    if status == "failed":
        assert not list(get_blob_store().list(f"images/{image.pk}/cog"))
    ready_image.refresh_from_db()
    assert ready_image.status == Image.Status.READY  # other images untouched


def test_same_file_uploaded_twice_makes_two_independent_images(personas, project, client_for, tmp_path):
    path = write_sample_geotiff(tmp_path / "twice.tif", size=128, trees=2).path
    client = client_for(personas.owner)
    first, status_1 = _ingest_file(client, project, path)
    second, status_2 = _ingest_file(client, project, path)
    assert status_1 == status_2 == Image.Status.READY
    assert first.pk != second.pk and first.cog_key != second.cog_key
    client.delete(reverse("v1:image-detail", args=[first.pk]))
    second.refresh_from_db()
    assert second.status == Image.Status.READY
