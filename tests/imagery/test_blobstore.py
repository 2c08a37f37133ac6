"""The blob store contract, run against both implementations: a local folder and GCS (a real emulator process
reached by the real google-cloud-storage client over HTTP). Plus: COG windows are read with byte ranges."""

from __future__ import annotations

import hashlib
import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

import numpy as np
import pytest
import rasterio
import requests
from rasterio.windows import Window

from imagery.blobstore import (
    MAX_SIGNED_URL_EXPIRY_S,
    BlobStore,
    GCSBlobStore,
    LocalBlobStore,
    UrlSigner,
    blobstore_from_url,
)

from .conftest import CountingProxy, GCSEmulator

MiB = 1024 * 1024
RecordProperty = Callable[[str, object], None]


@pytest.fixture(params=["local", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path / "blobs", signer=UrlSigner("s3cret", "http://testserver/blobs"))
    return blobstore_from_url(request.getfixturevalue("gcs_store_url"))


def pattern(size: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()


class PipeReader(io.RawIOBase):
    """A non-seekable stream (like a request body) of ``size`` deterministic bytes; can fail after ``fail_after``.

    Records the largest read requested, to show that uploads copy in bounded pieces.
    """

    def __init__(self, data: bytes, fail_after: int | None = None) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._fail_after = fail_after
        self.largest_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        self.largest_read = max(self.largest_read, len(buffer))
        if self._fail_after is not None and self._pos >= self._fail_after:
            raise ConnectionResetError("client went away mid-upload")
        chunk = self._data[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)


# ---------------------------------------------------------------------------------------------------- contract


def test_put_file_round_trip(store: BlobStore, tmp_path: Path) -> None:
    data = pattern(300_000)
    source = tmp_path / "source.bin"
    source.write_bytes(data)

    store.put_file("images/1/original/field.tif", source)

    assert store.exists("images/1/original/field.tif")
    assert store.size("images/1/original/field.tif") == len(data)
    with store.open_read("images/1/original/field.tif") as fh:
        assert fh.read() == data


def test_put_replaces_previous_blob(store: BlobStore) -> None:
    store.put_stream("a.bin", io.BytesIO(b"first version, longer"))
    store.put_stream("a.bin", io.BytesIO(b"second"))
    assert store.read_range("a.bin", 0, 100) == b"second"
    assert list(store.list()) == ["a.bin"]


@pytest.mark.parametrize("seekable", [True, False], ids=["file", "pipe"])
def test_put_stream_of_a_multi_mb_file_is_copied_in_bounded_pieces(store: BlobStore, seekable: bool) -> None:
    data = pattern(20 * MiB + 12345, seed=1)
    stream: io.RawIOBase | io.BytesIO = io.BytesIO(data) if seekable else PipeReader(data)

    store.put_stream("uploads/big.bin", stream)

    assert store.size("uploads/big.bin") == len(data)
    digest = hashlib.sha256()
    with store.open_read("uploads/big.bin") as fh:
        while chunk := fh.read(4 * MiB):
            digest.update(chunk)
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    if isinstance(stream, PipeReader):
        assert 0 < stream.largest_read <= 8 * MiB


def test_read_range_is_exact_and_inclusive(store: BlobStore) -> None:
    data = pattern(100_000, seed=2)
    store.put_stream("r.bin", io.BytesIO(data))

    for start, end in [(0, 0), (0, 99), (1000, 1999), (99_999, 99_999), (65_530, 65_545), (0, 99_999)]:
        assert store.read_range("r.bin", start, end) == data[start : end + 1], (start, end)
    assert store.read_range("r.bin", 99_990, 200_000) == data[99_990:]  # clamped at the end, like HTTP
    assert store.read_range("r.bin", 100_000, 100_010) == b""
    for start, end in [(-1, 5), (10, 9)]:
        with pytest.raises(ValueError):
            store.read_range("r.bin", start, end)


def test_open_read_is_seekable(store: BlobStore) -> None:
    data = pattern(200_000, seed=3)
    store.put_stream("s.bin", io.BytesIO(data))

    with store.open_read("s.bin") as fh:
        assert fh.seekable()
        fh.seek(150_000)
        assert fh.read(10) == data[150_000:150_010]
        assert fh.tell() == 150_010
        fh.seek(-7, os.SEEK_END)
        assert fh.read() == data[-7:]
        fh.seek(5)
        assert fh.read(3) == data[5:8]
        assert fh.read(0) == b""


@pytest.mark.parametrize("key", ["nope/x.tif", "folder"])
def test_missing_blob(store: BlobStore, key: str) -> None:
    store.put_stream("folder/inside.tif", io.BytesIO(b"x"))  # a "folder" is not a blob either
    assert not store.exists(key)
    for read in (
        lambda: store.open_read(key),
        lambda: store.read_range(key, 0, 10),
        lambda: store.size(key),
    ):
        with pytest.raises(FileNotFoundError):
            read()
    store.delete("nope/x.tif")  # idempotent


def test_exists_delete_delete_prefix_and_list(store: BlobStore) -> None:
    for key in ["a/1", "a/2", "a/b/3", "ab/4", "z"]:
        store.put_stream(key, io.BytesIO(key.encode()))

    assert list(store.list()) == ["a/1", "a/2", "a/b/3", "ab/4", "z"]
    assert list(store.list("a/")) == ["a/1", "a/2", "a/b/3"]
    assert list(store.list("a")) == ["a/1", "a/2", "a/b/3", "ab/4"]  # a string prefix, as in GCS
    assert list(store.list("missing/")) == []
    assert not store.exists("a")  # a "folder" is not a blob

    store.delete("a/1")
    assert not store.exists("a/1") and store.exists("a/2")

    store.delete_prefix("a/")
    assert list(store.list()) == ["ab/4", "z"]
    with pytest.raises(ValueError):
        store.delete_prefix("")


@pytest.mark.parametrize("existing", [False, True], ids=["new-key", "existing-key"])
def test_failed_stream_leaves_no_partial_blob(store: BlobStore, existing: bool) -> None:
    if existing:
        store.put_stream("images/7/cog.tif", io.BytesIO(b"the complete old COG"))

    with pytest.raises(ConnectionResetError):
        store.put_stream("images/7/cog.tif", PipeReader(pattern(12 * MiB), fail_after=9 * MiB))

    if existing:
        assert store.read_range("images/7/cog.tif", 0, 1000) == b"the complete old COG"
        assert list(store.list()) == ["images/7/cog.tif"]
    else:
        assert not store.exists("images/7/cog.tif")
        assert list(store.list()) == []


BAD_KEYS = ["", "/etc/passwd", "../outside", "a/../../outside", "a/..", "a//b", "a/./b", "./a", "a/", "a\\b", "a\0b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_could_escape_the_store_are_rejected(store: BlobStore, key: str) -> None:
    operations: list[Callable[[], object]] = [
        lambda: store.put_stream(key, io.BytesIO(b"x")),
        lambda: store.open_read(key),
        lambda: store.read_range(key, 0, 1),
        lambda: store.size(key),
        lambda: store.exists(key),
        lambda: store.delete(key),
        lambda: store.gdal_path(key),
        lambda: store.signed_url(key, "GET", 60),
    ]
    for operation in operations:
        with pytest.raises(ValueError):
            operation()
    if key not in ("", "a/"):  # both are fine as list prefixes
        with pytest.raises(ValueError):
            store.list(key)


def test_temporary_file_names_are_not_valid_keys(store: BlobStore) -> None:
    with pytest.raises(ValueError):
        store.put_stream("images/.cog.tif.abc123.partial", io.BytesIO(b"x"))


def test_gdal_reads_a_cog_through_gdal_path(store: BlobStore, cog_factory: Callable[..., Path]) -> None:
    cog = cog_factory(size=1024, seed=5)
    store.put_file("images/5/cog.tif", cog)
    with rasterio.open(cog) as reference:
        expected = reference.read(window=Window(300, 400, 256, 256))

    with rasterio.Env(**store.gdal_env()), rasterio.open(store.gdal_path("images/5/cog.tif")) as src:
        assert (src.width, src.height, src.count) == (1024, 1024, 3)
        np.testing.assert_array_equal(src.read(window=Window(300, 400, 256, 256)), expected)
    with rasterio.open("images/5/cog.tif", opener=store.rasterio_opener("images/5/cog.tif")) as src:
        np.testing.assert_array_equal(src.read(window=Window(300, 400, 256, 256)), expected)
    with pytest.raises(FileNotFoundError):  # GDAL's sidecar probes must not get the COG itself
        store.rasterio_opener("images/5/cog.tif")("images/5/cog.tif.aux.xml", "rb")


# ---------------------------------------------------------------------------------------------- local signing


def test_url_signer_round_trip_and_tampering() -> None:
    now = [1_800_000_000.0]
    signer = UrlSigner("s3cret", "https://maps.example.org/blobs/", clock=lambda: now[0])

    url = signer.sign("PUT", "images/9/original/my field.tif", 600)

    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == "https://maps.example.org"
    assert parts.path == "/blobs/images/9/original/my%20field.tif"
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert query["method"] == "PUT" and query["expires"] == str(1_800_000_600)
    key = unquote(parts.path.removeprefix("/blobs/"))
    expires, signature = query["expires"], query["signature"]

    assert signer.verify("PUT", key, expires, signature)
    assert not signer.verify("GET", key, expires, signature)  # a PUT link is not a GET link
    assert not signer.verify("PUT", "images/9/original/other.tif", expires, signature)
    assert not signer.verify("PUT", key, str(int(expires) + 3600), signature)  # extended expiry
    assert not signer.verify("PUT", key, expires, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert not signer.verify("PUT", key, "soon", signature)
    assert not signer.verify("PUT", "../" + key, expires, signature)
    assert not UrlSigner("other secret", "https://maps.example.org/blobs").verify("PUT", key, expires, signature)

    now[0] += 600
    assert signer.verify("PUT", key, expires, signature)  # valid up to and including `expires`
    now[0] += 1
    assert not signer.verify("PUT", key, expires, signature)


def test_local_store_signs_with_its_signer(tmp_path: Path) -> None:
    signer = UrlSigner("s3cret", "http://testserver/blobs")
    store = LocalBlobStore(tmp_path, signer=signer)

    url = store.signed_url("images/1/cog.tif", "GET", 60)
    query = parse_qs(urlsplit(url).query)
    assert url.startswith("http://testserver/blobs/images/1/cog.tif?")
    assert signer.verify("GET", "images/1/cog.tif", query["expires"][0], query["signature"][0])
    for expires_s in (0, -5, MAX_SIGNED_URL_EXPIRY_S + 1):
        with pytest.raises(ValueError):
            store.signed_url("images/1/cog.tif", "GET", expires_s)
    with pytest.raises(ValueError):
        store.signed_url("images/1/cog.tif", "DELETE", 60)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="no UrlSigner"):
        LocalBlobStore(tmp_path).signed_url("images/1/cog.tif", "GET", 60)


def test_local_writes_are_atomic_renames_of_hidden_temporary_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with pytest.raises(ConnectionResetError):
        store.put_stream("images/3/cog.tif", PipeReader(pattern(3 * MiB), fail_after=2 * MiB))
    assert [p.name for p in (tmp_path / "images/3").iterdir()] == []  # the temporary file was removed

    store.put_stream("images/3/cog.tif", io.BytesIO(b"ok"))
    assert (tmp_path / "images/3/cog.tif").read_bytes() == b"ok"
    store.delete_prefix("images/")
    assert list(tmp_path.iterdir()) == []  # emptied folders are pruned too


def test_put_file_with_move_hands_the_file_over(store: BlobStore, tmp_path: Path) -> None:
    data = pattern(1_000_000)
    source = tmp_path / "cog.tif"
    source.write_bytes(data)
    store.put_stream("images/4/cog.tif", io.BytesIO(b"previous version"))

    store.put_file("images/4/cog.tif", source, move=True)

    with store.open_read("images/4/cog.tif") as fh:
        assert fh.read() == data
    assert list(store.list("images/4/")) == ["images/4/cog.tif"]


def test_local_move_renames_on_one_filesystem_and_copies_across(tmp_path: Path, monkeypatch) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    source = tmp_path / "cog.tif"
    source.write_bytes(b"cog bytes")
    inode = source.stat().st_ino
    store.put_file("images/5/cog.tif", source, move=True)
    assert not source.exists() and store.path("images/5/cog.tif").stat().st_ino == inode  # renamed, not copied

    source.write_bytes(b"other cog")

    def cross_device(*_args: Any) -> None:
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", cross_device)
    store.put_file("images/6/cog.tif", source, move=True)
    assert store.path("images/6/cog.tif").read_bytes() == b"other cog"
    assert [p.name for p in store.path("images/6").iterdir()] == ["cog.tif"]  # no temporary file left


# ------------------------------------------------------------------------------------------------ GCS signing


@pytest.fixture(scope="module")
def service_account_credentials() -> tuple[Any, Any]:
    """Service-account credentials with a freshly generated RSA key: they sign offline, like a real key file."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account",
        "project_id": "test-project",
        "client_email": "blob-signer@test-project.iam.gserviceaccount.com",
        "private_key_id": "test-key",
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    return service_account.Credentials.from_service_account_info(info), private_key.public_key()


def test_gcs_signed_urls_are_v4_and_work_for_put_then_get(
    gcs_store_url: str, service_account_credentials: tuple[Any, Any]
) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    credentials, public_key = service_account_credentials
    plain = blobstore_from_url(gcs_store_url)
    assert isinstance(plain, GCSBlobStore)
    store = GCSBlobStore(plain.bucket_name, plain.prefix, signing_credentials=credentials)

    put_url = store.signed_url("uploads/field.tif", "PUT", 900, content_type="image/tiff")

    parts = urlsplit(put_url)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert parts.path == f"/{store.bucket_name}/{store.prefix}uploads/field.tif"
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "900"
    assert query["X-Goog-Credential"].startswith("blob-signer@test-project.iam.gserviceaccount.com/")
    assert query["X-Goog-SignedHeaders"] == "content-type;host"
    signed_at = time.strptime(query["X-Goog-Date"], "%Y%m%dT%H%M%SZ")
    assert abs(time.mktime(signed_at) - time.mktime(time.gmtime())) < 120
    # The signature is a real RSA signature by our key over the V4 string-to-sign.
    canonical_query = "&".join(sorted(p for p in parts.query.split("&") if not p.startswith("X-Goog-Signature=")))
    canonical_request = "\n".join(
        [
            "PUT",
            parts.path,
            canonical_query,
            f"content-type:image/tiff\nhost:{parts.netloc}\n",
            "content-type;host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    scope = query["X-Goog-Credential"].split("/", 1)[1]
    string_to_sign = "\n".join(
        [
            "GOOG4-RSA-SHA256",
            query["X-Goog-Date"],
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    public_key.verify(
        bytes.fromhex(query["X-Goog-Signature"]), string_to_sign.encode(), padding.PKCS1v15(), hashes.SHA256()
    )

    # The emulator does not check signatures, but it serves the same XML-API paths: the upload lands.
    body = pattern(3 * MiB, seed=9)
    assert requests.put(put_url, data=body, headers={"Content-Type": "image/tiff"}, timeout=30).status_code == 200
    assert store.size("uploads/field.tif") == len(body)
    get_url = store.signed_url("uploads/field.tif", "GET", 60)
    assert requests.get(get_url, timeout=30).content == body


def test_gcs_cannot_sign_with_anonymous_emulator_credentials(gcs_store_url: str) -> None:
    with pytest.raises(RuntimeError, match="cannot sign"):
        blobstore_from_url(gcs_store_url).signed_url("a.tif", "GET", 60)


def test_gcs_gdal_env_follows_the_emulator(gcs_store_url: str, gcs_emulator: GCSEmulator) -> None:
    store = blobstore_from_url(gcs_store_url + "/")
    assert isinstance(store, GCSBlobStore)
    assert store.gdal_path("images/1/cog.tif") == f"/vsigs/{store.bucket_name}/{store.prefix}images/1/cog.tif"
    assert store.gdal_env() == {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        "CPL_GS_ENDPOINT": gcs_emulator.url + "/",
        "GS_NO_SIGN_REQUEST": "YES",
    }


# -------------------------------------------------------------------------------------------- store from URL


def test_blobstore_from_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    signer = UrlSigner("k", "http://x/blobs")
    by_file_url = blobstore_from_url(f"file://{tmp_path}/a%20b", signer=signer)
    assert isinstance(by_file_url, LocalBlobStore)
    assert by_file_url.root == tmp_path / "a b" and by_file_url.signer is signer
    by_path = blobstore_from_url(str(tmp_path / "plain"))
    assert isinstance(by_path, LocalBlobStore) and by_path.root == tmp_path / "plain"

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", "http://127.0.0.1:1")  # no credentials lookup; nothing is sent
    gcs = blobstore_from_url("gs://my-bucket/some/prefix")
    assert isinstance(gcs, GCSBlobStore)
    assert (gcs.bucket_name, gcs.prefix) == ("my-bucket", "some/prefix/")
    assert blobstore_from_url("gs://my-bucket").gdal_path("k.tif") == "/vsigs/my-bucket/k.tif"

    for bad in ["", "s3://bucket/x", "https://example.org/x", "gs://", "gs:///x", "file://host/x", "gs://b/../x"]:
        with pytest.raises(ValueError):
            blobstore_from_url(bad)


# ------------------------------------------------------------------------------------------ ranged COG reads

WINDOW = Window(1920, 1920, 256, 256)  # straddles four 512 px internal tiles: the worst case for one window


class CountingFile(io.RawIOBase):
    """Wraps a store's file object and counts the bytes GDAL actually reads from it."""

    def __init__(self, inner: IO[bytes]) -> None:
        super().__init__()
        self._inner = inner
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, buffer: Any) -> int:
        data = self._inner.read(len(buffer))
        buffer[: len(data)] = data
        self.bytes_read += len(data)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def _read_window_via_opener(store: BlobStore, key: str, counter: list[CountingFile]) -> np.ndarray:
    serve = store.rasterio_opener(key)

    def opener(path: str, mode: str = "rb") -> CountingFile:
        wrapped = CountingFile(serve(path, mode))
        counter.append(wrapped)
        return wrapped

    with rasterio.open(key, opener=opener) as src:
        return src.read(window=WINDOW)


def _io_read_chars() -> int:
    """Bytes this process has read through read()/pread() syscalls (Linux), whatever the reader."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


@pytest.fixture(scope="module")
def large_cog_window(large_cog: Path) -> np.ndarray:
    with rasterio.open(large_cog) as src:
        return src.read(window=WINDOW)


def _report(record_property: RecordProperty, via: str, transferred: int, total: int) -> float:
    fraction = transferred / total
    record_property(f"fraction_{via}", round(fraction, 4))
    print(f"\n{via}: {transferred:,} of {total:,} bytes = {fraction:.1%}")
    return fraction


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux /proc/self/io to count file reads")
def test_local_window_read_via_gdal_path_reads_a_small_fraction(
    tmp_path: Path, large_cog: Path, large_cog_window: np.ndarray, record_property: RecordProperty
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    store.put_file("images/1/cog.tif", large_cog)
    total = store.size("images/1/cog.tif")

    before = _io_read_chars()
    with rasterio.Env(**store.gdal_env()), rasterio.open(store.gdal_path("images/1/cog.tif")) as src:
        window = src.read(window=WINDOW)
    transferred = _io_read_chars() - before

    np.testing.assert_array_equal(window, large_cog_window)
    assert _report(record_property, "local gdal_path", transferred, total) < 0.15


@pytest.mark.parametrize("kind", ["local", "gcs"])
def test_window_read_via_open_read_opener_reads_a_small_fraction(
    kind: str,
    tmp_path: Path,
    large_cog: Path,
    large_cog_window: np.ndarray,
    request: pytest.FixtureRequest,
    record_property: RecordProperty,
) -> None:
    proxy: CountingProxy | None = None
    if kind == "local":
        store: BlobStore = LocalBlobStore(tmp_path / "blobs")
    else:
        # The whole client goes through the proxy: it then counts exactly what crossed the wire.
        proxy = request.getfixturevalue("counting_proxy")
        url = request.getfixturevalue("gcs_store_url")
        request.getfixturevalue("monkeypatch").setenv("STORAGE_EMULATOR_HOST", proxy.url)
        store = blobstore_from_url(url)
    store.put_file("images/1/cog.tif", large_cog)
    total = store.size("images/1/cog.tif")

    files: list[CountingFile] = []
    if proxy:
        proxy.reset()
    window = _read_window_via_opener(store, "images/1/cog.tif", files)
    transferred = proxy.bytes_down if proxy else sum(f.bytes_read for f in files)

    np.testing.assert_array_equal(window, large_cog_window)
    assert _report(record_property, f"{kind} open_read opener", transferred, total) < 0.15


def test_gcs_window_read_via_vsigs_reads_a_small_fraction(
    counting_proxy: CountingProxy,
    gcs_store_url: str,
    large_cog: Path,
    large_cog_window: np.ndarray,
    monkeypatch: pytest.MonkeyPatch,
    record_property: RecordProperty,
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", counting_proxy.url)
    store = blobstore_from_url(gcs_store_url)  # a fresh prefix: no /vsigs/ cache entry from another test
    store.put_file("images/1/cog.tif", large_cog)
    total = store.size("images/1/cog.tif")

    counting_proxy.reset()
    with rasterio.Env(**store.gdal_env()), rasterio.open(store.gdal_path("images/1/cog.tif")) as src:
        window = src.read(window=WINDOW)
    transferred = counting_proxy.bytes_down

    assert counting_proxy.connections >= 1  # GDAL really went through the proxy, not around it
    np.testing.assert_array_equal(window, large_cog_window)
    assert _report(record_property, "gcs /vsigs/", transferred, total) < 0.15
