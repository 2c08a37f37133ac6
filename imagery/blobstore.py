"""The blob store: a handful of plain operations on opaque keys, on a local folder or on Google Cloud Storage.

Everything the platform keeps as bytes (uploaded originals, COGs, model weights, exports) lives here under
relative POSIX keys such as ``images/<id>/cog.tif``. Two properties matter to callers:

* a blob is either absent or complete: writes go to a temporary name (local) or a resumable session (GCS)
  and become visible in one step, so a crashed upload never leaves a half-written COG to be served;
* rasters are read with byte ranges, never whole: ``gdal_path()`` + ``gdal_env()`` give GDAL a path it reads
  with ranged requests (``/vsigs/`` on GCS), and ``open_read()`` gives a seekable file object for rasterio's
  ``opener=`` or for streaming a download.

This module imports nothing from Django; the Django view that serves local signed URLs lives elsewhere and
calls ``UrlSigner.verify``.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import hashlib
import hmac
import io
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal
from urllib.parse import quote, unquote, urlencode, urlsplit

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Client

Method = Literal["GET", "PUT"]

#: Longest lifetime of a signed URL; GCS refuses V4 signatures valid for more than 7 days.
MAX_SIGNED_URL_EXPIRY_S = 7 * 24 * 3600
#: Streams are copied in pieces of this size, so memory stays flat for multi-GB uploads.
COPY_CHUNK = 1024 * 1024
#: GCS resumable uploads send (and hold in memory) one chunk at a time; must be a multiple of 256 KiB.
GCS_UPLOAD_CHUNK = 8 * 1024 * 1024
#: Read-ahead of ``GCSBlobStore.open_read``: GDAL reads a COG in small pieces, one HTTP request per piece
#: without a buffer, while a large buffer fetches bytes the window does not need.
GCS_READ_BUFFER = 64 * 1024

# Local temporary files are ``.<name>.<random>.partial`` beside their target; keys may not look like that.
_PARTIAL_SUFFIX = ".partial"


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative POSIX key, else raise ValueError.

    Keys become file paths and object names, so anything that could escape the store's root or alias
    another key (``..``, ``.``, empty segments, absolute paths, backslashes, NUL) is refused.
    """
    if not isinstance(key, str) or not key:
        raise ValueError("blob key must be a non-empty string")
    if key.startswith("/"):
        raise ValueError(f"blob key must be relative, got {key!r}")
    if "\\" in key or "\x00" in key:
        raise ValueError(f"blob key may not contain backslashes or NUL: {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"blob key has an empty, '.' or '..' segment: {key!r}")
        if segment.startswith(".") and segment.endswith(_PARTIAL_SUFFIX):
            raise ValueError(f"blob key segment {segment!r} is reserved for temporary files")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is ``""`` or a key with an optional trailing slash, else raise ValueError."""
    if prefix == "":
        return prefix
    validate_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


@dataclasses.dataclass(frozen=True)
class BlobInfo:
    """A stored blob: its key, size in bytes and last write as Unix seconds (UTC)."""

    key: str
    size: int
    modified: float


def _check_signing_args(method: str, expires_s: int) -> None:
    if method not in ("GET", "PUT"):
        raise ValueError(f"signed URLs are for GET or PUT, not {method!r}")
    if not 0 < expires_s <= MAX_SIGNED_URL_EXPIRY_S:
        raise ValueError(f"expires_s must be in 1..{MAX_SIGNED_URL_EXPIRY_S}, got {expires_s}")


class BlobStore(abc.ABC):
    """One interface over the local folder and GCS. Keys are validated by every operation.

    Reading a missing key raises FileNotFoundError in both implementations; deleting one is a no-op.
    """

    @abc.abstractmethod
    def put_file(self, key: str, local_path: str | os.PathLike[str], *, move: bool = False) -> None:
        """Store the file at ``local_path`` under ``key``, replacing any previous blob atomically.

        ``move=True`` hands the file over (a job's temporary output): the local store then renames it into
        place when it is on the same filesystem instead of copying gigabytes, and the file may be gone after.
        """

    @abc.abstractmethod
    def put_stream(self, key: str, fileobj: IO[bytes]) -> None:
        """Store everything read from ``fileobj`` under ``key`` with bounded memory.

        If reading ``fileobj`` raises, the exception propagates and ``key`` keeps its previous state.
        """

    @abc.abstractmethod
    def open_read(self, key: str) -> IO[bytes]:
        """A seekable binary file object over the blob (for rasterio's ``opener=`` or a streamed download)."""

    @abc.abstractmethod
    def read_range(self, key: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` *inclusive*, as in an HTTP ``Range: bytes=start-end`` header.

        Clamped to the end of the blob, so a range past the end returns fewer (or no) bytes.
        """

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size of the blob in bytes."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a complete blob is stored under ``key``."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Delete the blob; a missing blob is not an error (retries and cleanups stay idempotent)."""

    @abc.abstractmethod
    def delete_prefix(self, prefix: str) -> None:
        """Delete every blob whose key starts with ``prefix`` (a string prefix, like GCS; must not be empty)."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys starting with ``prefix`` (a string prefix: ``"a"`` matches ``"a/x"`` and ``"ab"``), sorted."""

    @abc.abstractmethod
    def list_info(self, prefix: str = "") -> Iterator[BlobInfo]:
        """Like ``list`` (sorted by key), with each blob's size and last-modified time (for cleanups)."""

    @abc.abstractmethod
    def signed_url(
        self,
        key: str,
        method: Method,
        expires_s: int,
        content_type: str | None = None,
        download_name: str | None = None,
    ) -> str:
        """A URL that lets its bearer GET or PUT this one blob, without other credentials, for ``expires_s``.

        ``download_name`` (a GET only; see ``check_download_name``) is the file name a browser saves it under:
        the answer carries ``Content-Disposition: attachment; filename="<download_name>"``.
        """

    @abc.abstractmethod
    def gdal_path(self, key: str) -> str:
        """A path GDAL/rasterio opens with ranged reads (inside ``rasterio.Env(**self.gdal_env())``)."""

    @abc.abstractmethod
    def gdal_env(self) -> dict[str, str]:
        """GDAL configuration options needed to read ``gdal_path()`` efficiently."""

    def rasterio_opener(self, key: str) -> Callable[..., IO[bytes]]:
        """An ``opener=`` for ``rasterio.open(key, opener=store.rasterio_opener(key))`` that serves only ``key``.

        GDAL probes sidecar files (``key.aux.xml``, ``key.msk``, ...) through the same opener; answering those
        with the blob itself made GDAL read the whole COG as XML, so every other path is FileNotFoundError.
        """
        validate_key(key)

        def opener(path: str, mode: str = "rb") -> IO[bytes]:
            if path != key or "w" in mode or "+" in mode:
                raise FileNotFoundError(path)
            return self.open_read(key)

        return opener

    def _check_delete_prefix(self, prefix: str) -> str:
        if not prefix:
            raise ValueError("delete_prefix needs a non-empty prefix; refusing to empty the whole store")
        return validate_prefix(prefix)


# --------------------------------------------------------------------------------------------------------------
# Local folder


#: A name safe in a Content-Disposition header and on every file system: ASCII letters, digits, - _ and dots.
DOWNLOAD_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def check_download_name(name: str) -> str:
    if not DOWNLOAD_NAME.match(name) or ".." in name:
        raise ValueError(f"not a safe download file name: {name!r}")
    return name


def attachment_header(name: str) -> str:
    return f'attachment; filename="{check_download_name(name)}"'


class UrlSigner:
    """Signs and verifies expiring URLs for the local store, which the platform serves through a Django view.

    URL format (the view must implement exactly this)::

        {base_url}/{quote(key, safe="/")}?method={GET|PUT}&expires={unix seconds}&signature={hex}

    ``signature`` is HMAC-SHA256, keyed with a key derived from ``secret``, over
    ``"{method}\\n{key}\\n{expires}"`` (UTF-8), in lowercase hex. The view takes ``key`` from the decoded
    path (Django's ``<path:key>`` converter already unquotes it) and calls::

        signer.verify(request.method, key, request.GET.get("expires"), request.GET.get("signature"))

    Checking the *request's* method, not the ``method`` query parameter (which is only there for people
    reading the URL), is what stops a GET link from being used to overwrite the blob. ``verify`` also rejects
    expired links and invalid keys. Content type is not part of the signature. A GET link may also name the
    file a browser saves it as, ``&filename={name}``: then the signature covers ``"\n{name}"`` appended to that
    message, so nobody can change the name of a link they were given.
    """

    def __init__(self, secret: str | bytes, base_url: str, *, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("UrlSigner needs a non-empty secret")
        raw = secret.encode() if isinstance(secret, str) else secret
        # A purpose-specific key, so that the signatures never collide with other uses of the same secret
        # (the Django SECRET_KEY signs sessions too).
        self._key = hmac.new(raw, b"imagery.blobstore.UrlSigner/v1", hashlib.sha256).digest()
        self.base_url = base_url.rstrip("/")
        self._clock = clock

    def signature(self, method: str, key: str, expires: int, filename: str | None = None) -> str:
        message = f"{method}\n{key}\n{expires}{'' if filename is None else chr(10) + filename}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def sign(self, method: Method, key: str, expires_s: int, filename: str | None = None) -> str:
        """A URL valid for ``expires_s`` seconds from now (a GET one downloading as ``filename``, when given)."""
        validate_key(key)
        _check_signing_args(method, expires_s)
        expires = int(self._clock()) + expires_s
        params: dict[str, object] = {"method": method, "expires": expires}
        if filename is not None:
            if method != "GET":
                raise ValueError("only a GET link names a download file")
            params["filename"] = check_download_name(filename)
        params["signature"] = self.signature(method, key, expires, filename)
        query = urlencode(params)
        return f"{self.base_url}/{quote(key, safe='/')}?{query}"

    def verify(
        self, method: str, key: str, expires: int | str | None, signature: str | None, filename: str | None = None
    ) -> bool:
        """True only for an unexpired, untampered signature of this method, key and download name (constant-time
        compare)."""
        try:
            validate_key(key)
            expires_at = int(expires)
        except (TypeError, ValueError):
            return False
        if expires_at < self._clock():
            return False
        expected = self.signature(method, key, expires_at, filename)
        return hmac.compare_digest(expected.encode(), str(signature).encode())


class LocalBlobStore(BlobStore):
    """Blobs as files under ``root``; the embedded default.

    Writes go to ``.<name>.<random>.partial`` in the target's folder, are fsynced, then ``os.replace``-d into
    place, so readers see the old blob or the new one, never a partial one (same folder = same filesystem =
    atomic rename). ``list`` never shows temporary files.
    """

    def __init__(self, root: str | os.PathLike[str], signer: UrlSigner | None = None) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.signer = signer

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """The file path of ``key`` (which need not exist)."""
        return self.root / validate_key(key)

    @contextlib.contextmanager
    def _atomic_writer(self, key: str) -> Iterator[IO[bytes]]:
        target = self.path(key)
        for attempt in range(3):
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=_PARTIAL_SUFFIX)
                break
            except FileNotFoundError:  # a concurrent delete_prefix pruned the folder between the two calls
                if attempt == 2:
                    raise
        try:
            with os.fdopen(fd, "wb") as out:
                yield out
                out.flush()
                # Without fsync a crash shortly after the rename can leave an empty file under the final name.
                os.fsync(out.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        self._publish(Path(tmp_name), target)

    @staticmethod
    def _publish(tmp_name: Path, target: Path) -> None:
        """Give a complete, synced temporary file its final name, or remove it."""
        try:
            os.chmod(tmp_name, 0o644)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise

    def put_file(self, key: str, local_path: str | os.PathLike[str], *, move: bool = False) -> None:
        if move and self._move_into(key, Path(local_path)):
            return
        with open(local_path, "rb") as src, self._atomic_writer(key) as out:
            shutil.copyfileobj(src, out, COPY_CHUNK)

    def _move_into(self, key: str, local_path: Path) -> bool:
        """Rename ``local_path`` to ``key`` (synced first, as a copy would be); False across filesystems."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp_name = target.parent / f".{target.name}.{os.urandom(6).hex()}{_PARTIAL_SUFFIX}"
        try:
            os.rename(local_path, tmp_name)
        except OSError:
            return False  # another filesystem (EXDEV) or not allowed: copy instead
        try:
            with open(tmp_name, "rb") as fh:
                os.fsync(fh.fileno())
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        self._publish(tmp_name, target)
        return True

    def put_stream(self, key: str, fileobj: IO[bytes]) -> None:
        with self._atomic_writer(key) as out:
            shutil.copyfileobj(fileobj, out, COPY_CHUNK)

    def _file(self, key: str) -> Path:
        # A "folder" key is missing too (not IsADirectoryError), as it would be on GCS.
        path = self.path(key)
        if not path.is_file():
            raise FileNotFoundError(key)
        return path

    def open_read(self, key: str) -> IO[bytes]:
        return open(self._file(key), "rb")

    def read_range(self, key: str, start: int, end: int) -> bytes:
        _check_range(start, end)
        with open(self._file(key), "rb") as fh:
            fh.seek(start)
            return fh.read(end - start + 1)

    def size(self, key: str) -> int:
        return self._file(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        self._check_delete_prefix(prefix)
        folders: set[Path] = set()
        # Temporary files of crashed writes go too: after a cleanup nothing of the prefix is left on disk.
        for key in self._walk(prefix, include_partial=True):
            path = self.root / key
            path.unlink(missing_ok=True)
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            while folder != self.root and folder.is_relative_to(self.root):
                try:
                    folder.rmdir()
                except OSError:  # not empty (another blob, or a concurrent put): keep it
                    break
                folder = folder.parent

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        return iter(sorted(self._walk(prefix, include_partial=False)))

    def list_info(self, prefix: str = "") -> Iterator[BlobInfo]:
        for key in self.list(prefix):
            try:
                stat = (self.root / key).stat()
            except FileNotFoundError:  # deleted since it was listed
                continue
            yield BlobInfo(key, stat.st_size, stat.st_mtime)

    def _walk(self, prefix: str, *, include_partial: bool) -> Iterator[str]:
        # Walk only the deepest folder the prefix names, then filter by string prefix (GCS semantics).
        base = self.root / prefix.rpartition("/")[0]
        for folder, _dirs, files in os.walk(base):
            rel = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                key = name if rel == "." else f"{rel}/{name}"
                partial = name.startswith(".") and name.endswith(_PARTIAL_SUFFIX)
                if key.startswith(prefix) and (include_partial or not partial):
                    yield key

    def signed_url(
        self,
        key: str,
        method: Method,
        expires_s: int,
        content_type: str | None = None,
        download_name: str | None = None,
    ) -> str:
        """A URL served by the platform's blob view (see UrlSigner for the format); ``content_type`` is unused."""
        if self.signer is None:
            raise RuntimeError("this LocalBlobStore has no UrlSigner, so it cannot hand out signed URLs")
        return self.signer.sign(method, key, expires_s, download_name)

    def gdal_path(self, key: str) -> str:
        return str(self.path(key))

    def gdal_env(self) -> dict[str, str]:
        # Stops GDAL from listing the (possibly large) folder to look for sidecar files.
        return {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}


def _check_range(start: int, end: int) -> None:
    if start < 0 or end < start:
        raise ValueError(f"invalid byte range {start}-{end}")


# --------------------------------------------------------------------------------------------------------------
# Google Cloud Storage


class _RangedBlobRaw(io.RawIOBase):
    """A seekable raw file over one GCS object generation: each ``readinto`` is one ranged GET.

    Unlike the client's BlobReader, it never reads ahead on its own (BlobReader downloaded more than the whole
    COG for one window); wrap it in ``io.BufferedReader`` to merge GDAL's many small reads.
    """

    def __init__(self, blob: Blob, size: int) -> None:
        super().__init__()
        self._blob = blob
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self._size - self._pos)
        if count <= 0:
            return 0
        data = _gcs_download(self._blob, self._pos, self._pos + count - 1)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def readall(self) -> bytes:
        # The default readall fetches 8 KiB per request; the caller wants everything, so fetch big pieces.
        parts = []
        while self._pos < self._size:
            end = min(self._pos + GCS_UPLOAD_CHUNK, self._size) - 1
            parts.append(_gcs_download(self._blob, self._pos, end))
            self._pos = end + 1
        return b"".join(parts)


def _gcs_download(blob: Blob, start: int, end: int) -> bytes:
    from google.api_core.exceptions import NotFound, RequestRangeNotSatisfiable

    try:
        # checksum=None: GCS only has checksums of whole objects, a partial read cannot be checked anyway.
        return blob.download_as_bytes(start=start, end=end, checksum=None)
    except NotFound as exc:
        raise FileNotFoundError(blob.name) from exc
    except RequestRangeNotSatisfiable:
        return b""


class GCSBlobStore(BlobStore):
    """Blobs as objects ``gs://{bucket}/{prefix}{key}``, through the official ``google-cloud-storage`` client.

    Credentials come from the environment as usual (``GOOGLE_APPLICATION_CREDENTIALS``, workload identity,
    metadata server). When ``STORAGE_EMULATOR_HOST`` is set the client talks to that emulator anonymously,
    and ``gdal_env()`` points GDAL's ``/vsigs/`` at it too.

    Signed URLs are V4 and signed by ``signing_credentials`` or else the client's credentials: a service-account
    key signs locally; metadata-server credentials sign through the IAM signBlob API with their access token.
    Anonymous (emulator) credentials cannot sign.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        client: Client | None = None,
        *,
        signing_credentials: Any = None,
        emulator_host: str | None = None,
    ) -> None:
        from google.cloud import storage

        if not bucket or "/" in bucket:
            raise ValueError(f"invalid GCS bucket name {bucket!r}")
        prefix = prefix.strip("/")
        self.prefix = f"{validate_key(prefix)}/" if prefix else ""
        self.bucket_name = bucket
        self.emulator_host = emulator_host or os.environ.get("STORAGE_EMULATOR_HOST") or None
        self.client = client if client is not None else storage.Client()
        self.bucket = self.client.bucket(bucket)
        self.signing_credentials = signing_credentials

    def __repr__(self) -> str:
        return f"GCSBlobStore('gs://{self.bucket_name}/{self.prefix}')"

    def object_name(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _blob(self, key: str) -> Blob:
        blob = self.bucket.blob(self.object_name(key))
        # Resumable uploads hold one chunk in memory; the client's default chunk is 100 MiB.
        blob.chunk_size = GCS_UPLOAD_CHUNK
        return blob

    def put_file(self, key: str, local_path: str | os.PathLike[str], *, move: bool = False) -> None:
        # Files above 8 MiB go through a resumable session; the object appears only when the last chunk lands.
        self._blob(key).upload_from_filename(os.fspath(local_path))

    def put_stream(self, key: str, fileobj: IO[bytes]) -> None:
        blob = self._blob(key)
        seekable = False
        with contextlib.suppress(AttributeError, OSError, ValueError):
            seekable = fileobj.seekable() and fileobj.tell() == 0
        if seekable:
            # Unknown size: a resumable upload in GCS_UPLOAD_CHUNK pieces, finalised by the last short chunk.
            blob.upload_from_file(fileobj)
            return
        # The resumable protocol needs tell()/seek() to resend a chunk; spool a pipe-like stream to disk first.
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(fileobj, spool, COPY_CHUNK)
            spool.seek(0)
            blob.upload_from_file(spool)

    def _stat(self, key: str) -> Blob:
        blob = self.bucket.get_blob(self.object_name(key))
        if blob is None:
            raise FileNotFoundError(key)
        return blob

    def open_read(self, key: str) -> IO[bytes]:
        stat = self._stat(key)
        # A fresh Blob pinned to the generation we measured: it builds download URLs from the client's endpoint
        # (not the stored mediaLink) and fails instead of mixing bytes if the object is replaced mid-read.
        pinned = self.bucket.blob(stat.name, generation=stat.generation)
        return io.BufferedReader(_RangedBlobRaw(pinned, stat.size or 0), buffer_size=GCS_READ_BUFFER)

    def read_range(self, key: str, start: int, end: int) -> bytes:
        _check_range(start, end)
        return _gcs_download(self.bucket.blob(self.object_name(key)), start, end)

    def size(self, key: str) -> int:
        return self._stat(key).size or 0

    def exists(self, key: str) -> bool:
        return self.bucket.blob(self.object_name(key)).exists()

    def delete(self, key: str) -> None:
        from google.api_core.exceptions import NotFound

        with contextlib.suppress(NotFound):
            self.bucket.blob(self.object_name(key)).delete()

    def delete_prefix(self, prefix: str) -> None:
        from google.api_core.exceptions import NotFound

        self._check_delete_prefix(prefix)
        for blob in self.client.list_blobs(self.bucket, prefix=self.prefix + prefix):
            with contextlib.suppress(NotFound):
                blob.delete()

    def list(self, prefix: str = "") -> Iterator[str]:
        validate_prefix(prefix)
        cut = len(self.prefix)
        names = (blob.name[cut:] for blob in self.client.list_blobs(self.bucket, prefix=self.prefix + prefix))
        return iter(sorted(names))

    def list_info(self, prefix: str = "") -> Iterator[BlobInfo]:
        validate_prefix(prefix)
        cut = len(self.prefix)
        infos = [
            # An object without a known write time counts as just written: cleanups never take it.
            BlobInfo(blob.name[cut:], blob.size or 0, blob.updated.timestamp() if blob.updated else time.time())
            for blob in self.client.list_blobs(self.bucket, prefix=self.prefix + prefix)
        ]
        return iter(sorted(infos, key=lambda info: info.key))

    def signed_url(
        self,
        key: str,
        method: Method,
        expires_s: int,
        content_type: str | None = None,
        download_name: str | None = None,
    ) -> str:
        """A V4 signed URL; a PUT must then send exactly ``content_type`` (if given) as its Content-Type."""
        _check_signing_args(method, expires_s)
        if download_name is not None and method != "GET":
            raise ValueError("only a GET link names a download file")
        return self._blob(key).generate_signed_url(
            version="v4",
            expiration=timedelta(seconds=expires_s),
            method=method,
            content_type=content_type,
            # GCS answers with this header; being part of the signed query, it cannot be changed.
            response_disposition=None if download_name is None else attachment_header(download_name),
            **self._signing_kwargs(),
        )

    def _signing_kwargs(self) -> dict[str, Any]:
        import google.auth.credentials
        import google.auth.transport.requests

        credentials = self.signing_credentials or self.client._credentials
        if isinstance(credentials, google.auth.credentials.Signing):
            return {"credentials": credentials}
        email = getattr(credentials, "service_account_email", None)
        if not email or isinstance(credentials, google.auth.credentials.AnonymousCredentials):
            raise RuntimeError(
                f"{type(credentials).__name__} cannot sign URLs: use service-account or metadata-server credentials,"
                " or pass signing_credentials"
            )
        # Metadata-server credentials hold no private key; GCS then signs through IAM signBlob with the token.
        if not credentials.valid:
            credentials.refresh(google.auth.transport.requests.Request())
        return {"service_account_email": email, "access_token": credentials.token}

    def gdal_path(self, key: str) -> str:
        return f"/vsigs/{self.bucket_name}/{self.object_name(key)}"

    def gdal_env(self) -> dict[str, str]:
        env = {"GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
        if self.emulator_host:
            host = self.emulator_host if "://" in self.emulator_host else f"http://{self.emulator_host}"
            # /vsicurl/ fails on the emulator (no HEAD); /vsigs/ with a custom endpoint and no signing works.
            env.update(CPL_GS_ENDPOINT=host.rstrip("/") + "/", GS_NO_SIGN_REQUEST="YES")
        return env


# --------------------------------------------------------------------------------------------------------------


def blobstore_from_url(url: str, *, signer: UrlSigner | None = None) -> BlobStore:
    """Build the store named by a settings URL.

    ``file:///abs/path`` or a plain path → LocalBlobStore (``signer`` signs its URLs);
    ``gs://bucket`` or ``gs://bucket/prefix`` → GCSBlobStore (signs with its own credentials).
    """
    if not url or not url.strip():
        raise ValueError("blob store URL is empty; expected a folder path, file:///abs/path or gs://bucket/prefix")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "":
        return LocalBlobStore(Path(url).expanduser(), signer=signer)
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"blob store URL {url!r}: a file URL must be file:///absolute/path")
        return LocalBlobStore(Path(unquote(parts.path)), signer=signer)
    if scheme == "gs":
        if not parts.netloc:
            raise ValueError(f"blob store URL {url!r}: expected gs://bucket or gs://bucket/prefix")
        return GCSBlobStore(parts.netloc, unquote(parts.path))
    raise ValueError(
        f"unsupported blob store URL {url!r}: expected a folder path, file:///abs/path or gs://bucket/prefix"
    )
