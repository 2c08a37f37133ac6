"""Signed blob URLs of the local store: the platform itself plays the part GCS plays in production.

A signed URL is its own authorisation (no session, no CSRF): it names one key, one method and an
expiry, HMAC-signed with the server's secret (`imagery.blobstore.UrlSigner`).
"""

from __future__ import annotations

import re

from django.conf import settings
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from imagery.blobstore import LocalBlobStore, attachment_header
from imagery.storage import get_blob_store

RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
CHUNK = 1024 * 1024


def _error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"detail": message}, status=status)


@csrf_exempt
def signed_blob(request, key: str):
    store = get_blob_store()
    if not isinstance(store, LocalBlobStore) or store.signer is None:
        return _error(404, "Signed blob URLs are served by the blob store itself in this deployment.")
    if request.method not in ("GET", "HEAD", "PUT"):
        return _error(405, "Only GET, HEAD and PUT are allowed on a signed URL.")
    method = "GET" if request.method == "HEAD" else request.method
    filename = request.GET.get("filename")  # covered by the signature: the name the link was made with
    try:
        valid = store.signer.verify(
            method, key, request.GET.get("expires", ""), request.GET.get("signature", ""), filename
        )
    except ValueError:
        valid = False
    if not valid:
        return _error(403, "This link is invalid or has expired. Ask for a new one.")
    if method == "PUT":
        return _put(request, store, key)
    response = _get(request, store, key)
    if filename is not None and response.status_code in (200, 206):
        response["Content-Disposition"] = attachment_header(filename)
    return response


def _put(request, store: LocalBlobStore, key: str) -> HttpResponse:
    length = request.META.get("CONTENT_LENGTH")
    limit = settings.MAX_UPLOAD_SIZE_GB * 1024**3
    if length and int(length) > limit:
        return _error(413, f"The file is larger than the {settings.MAX_UPLOAD_SIZE_GB} GB limit.")
    # The body is streamed to disk in chunks: a multi-GB upload never sits in memory. A body shorter
    # than announced (connection dropped) raises before the blob is renamed into place: nothing is kept.
    try:
        store.put_stream(key, ExactLengthReader(request, int(length) if length else None))
    except IncompleteBody as exc:
        return _error(400, str(exc))
    return HttpResponse(status=200)


class IncompleteBody(Exception):
    pass


class ExactLengthReader:
    """Reads a request body and raises at its end if fewer bytes came than Content-Length announced."""

    def __init__(self, stream, expected: int | None) -> None:
        self.stream = stream
        self.expected = expected
        self.received = 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.stream.read(size)
        self.received += len(chunk)
        if not chunk and self.expected is not None and self.received < self.expected:
            raise IncompleteBody(
                f"The upload was interrupted: {self.received:,} of {self.expected:,} bytes arrived. Upload it again."
            )
        return chunk


def _get(request, store: LocalBlobStore, key: str) -> HttpResponse:
    if not store.exists(key):
        return _error(404, "No such file.")
    size = store.size(key)
    match = RANGE.match(request.META.get("HTTP_RANGE", ""))
    if not match:
        response = FileResponse(store.open_read(key), as_attachment=False)
        response["Accept-Ranges"] = "bytes"
        return response
    start = int(match.group(1))
    end = min(int(match.group(2) or size - 1), size - 1)
    if start >= size or end < start:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response

    def body():
        with store.open_read(key) as fh:
            fh.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = fh.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    response = StreamingHttpResponse(body(), status=206, content_type="application/octet-stream")
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(end - start + 1)
    response["Accept-Ranges"] = "bytes"
    return response
