"""The platform's blob store, built once per process from settings.BLOBSTORE_URL."""

from __future__ import annotations

import functools

from django.conf import settings

from imagery.blobstore import BlobStore, UrlSigner, blobstore_from_url

SIGNED_BLOB_PATH = "/blobs/"


@functools.cache
def get_blob_store() -> BlobStore:
    signer = UrlSigner(secret=settings.SECRET_KEY, base_url=settings.PUBLIC_BASE_URL + SIGNED_BLOB_PATH.rstrip("/"))
    return blobstore_from_url(settings.BLOBSTORE_URL, signer=signer)


def image_original_key(image_id, filename: str) -> str:
    return f"images/{image_id}/original/{filename}"


def image_cog_key(image_id, version: str) -> str:
    """Each ingest attempt writes its own COG, so a duplicate or late attempt can never remove the one in use."""
    return f"images/{image_id}/cog-{version}.tif"


def image_cog_prefix(image_id) -> str:
    return f"images/{image_id}/cog-"


def image_prefix(image_id) -> str:
    return f"images/{image_id}/"
