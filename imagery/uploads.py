"""Getting a file into the platform: small files through the API, large ones straight to the blob store.

Large uploads never pass through Django in memory: `start_upload` creates the image row and a signed,
expiring PUT URL; the client PUTs the bytes to the blob store (GCS, or the platform's own signed-blob
view for the local store); `commit_upload` checks the bytes arrived and queues ingest. The public API's
three-step flow (start → PUT → commit) maps onto the same functions.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import IO

from django.db import transaction

from imagery.ingest import enqueue_ingest
from imagery.models import Image
from imagery.storage import get_blob_store, image_original_key, image_prefix
from picterra.organizations.models import Project

UPLOAD_URL_TTL_S = 24 * 3600


class UploadNotReceived(Exception):
    """Commit was asked for, but no complete file is in the blob store."""


def safe_filename(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.rsplit("/", 1)[-1]).strip("._")
    return cleaned[:120] or "upload"


def _new_image(project: Project, user, name: str, filename: str, captured_at: datetime | None, status: str) -> Image:
    image = Image(
        project=project,
        name=name or filename,
        captured_at=captured_at,
        original_filename=filename,
        created_by=user,
        status=status,
    )
    image.original_key = image_original_key(image.pk, safe_filename(filename))
    return image


def store_small_upload(
    project: Project, user, file: IO[bytes], filename: str, name: str = "", captured_at: datetime | None = None
) -> Image:
    """Store a file sent in the request body and queue its ingest."""
    image = _new_image(project, user, name, filename, captured_at, Image.Status.UPLOADED)
    store = get_blob_store()
    store.put_stream(image.original_key, file)
    image.file_size = store.size(image.original_key)
    try:
        with transaction.atomic():
            image.save()
            enqueue_ingest(image)
    except Exception:
        store.delete_prefix(image_prefix(image.pk))  # no orphaned blob when the row could not be written
        raise
    return image


def start_upload(
    project: Project, user, filename: str, name: str = "", captured_at: datetime | None = None
) -> tuple[Image, str]:
    """Create the image (waiting for its bytes) and a signed URL to PUT them to."""
    image = _new_image(project, user, name, filename, captured_at, Image.Status.UPLOADING)
    image.save()
    return image, upload_url(image)


def upload_url(image: Image) -> str:
    """A fresh signed PUT URL for an image still waiting for its bytes (to retry an upload)."""
    return get_blob_store().signed_url(image.original_key, "PUT", UPLOAD_URL_TTL_S)


def commit_upload(image: Image) -> Image:
    """The bytes are in the blob store: record their size and queue ingest. Idempotent."""
    store = get_blob_store()
    if image.status != Image.Status.UPLOADING:
        return image
    if not store.exists(image.original_key):
        raise UploadNotReceived("No file has been received for this image yet: PUT it to the upload URL first.")
    size = store.size(image.original_key)
    if size == 0:
        raise UploadNotReceived("The uploaded file is empty.")
    with transaction.atomic():
        updated = Image.objects.filter(pk=image.pk, status=Image.Status.UPLOADING).update(
            status=Image.Status.UPLOADED, file_size=size
        )
        if updated:
            enqueue_ingest(image)
    image.refresh_from_db()
    return image
