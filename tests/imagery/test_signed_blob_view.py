"""The local store's signed URLs: PUT streams to disk, GET serves (ranges too), anything else is refused."""

from __future__ import annotations

import io
import time
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from imagery.blobstore import UrlSigner
from imagery.storage import get_blob_store


def local_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.fixture
def store():
    return get_blob_store()


def test_put_then_get_through_signed_urls(client, store):
    key = "uploads/test-signed/file.bin"
    payload = bytes(range(256)) * 40
    put = client.generic(
        "PUT", local_path(store.signed_url(key, "PUT", 60)), payload, content_type="application/octet-stream"
    )
    assert put.status_code == 200
    assert store.read_range(key, 0, len(payload) - 1) == payload

    get_url = local_path(store.signed_url(key, "GET", 60))
    whole = client.get(get_url)
    assert whole.status_code == 200 and b"".join(whole.streaming_content) == payload
    part = client.get(get_url, HTTP_RANGE="bytes=100-199")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes 100-199/{len(payload)}"
    assert b"".join(part.streaming_content) == payload[100:200]
    assert client.get(get_url, HTTP_RANGE=f"bytes={len(payload)}-").status_code == 416


def test_signed_urls_refuse_tampering_expiry_and_the_wrong_method(client, store):
    key = "uploads/test-signed/other.bin"
    store.put_stream(key, io.BytesIO(b"original"))
    get_url = local_path(store.signed_url(key, "GET", 60))
    assert client.generic("PUT", get_url, b"overwritten").status_code == 403
    assert client.get(get_url.replace("other.bin", "secret.bin")).status_code == 403
    assert client.get(get_url[:-2] + ("00" if not get_url.endswith("00") else "11")).status_code == 403
    an_hour_ago = UrlSigner(settings.SECRET_KEY, store.signer.base_url, clock=lambda: time.time() - 3600)
    assert client.get(local_path(an_hour_ago.sign("GET", key, 60))).status_code == 403
    assert client.get(local_path(an_hour_ago.sign("GET", key, 7200))).status_code == 200
    assert client.get(f"/blobs/{key}").status_code == 403
    assert store.read_range(key, 0, 7) == b"original"
    response = client.get(f"/blobs/{key}?expires=soon&signature=x")
    assert response.status_code == 403
    assert "expired" in response.json()["detail"]
