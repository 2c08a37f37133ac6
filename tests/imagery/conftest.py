"""Imagery fixtures: a real GCS emulator subprocess, a byte-counting TCP proxy, generated COGs.

Nothing here needs Django or a database, so the blob-store tests also run with ``-p no:django``.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import rasterio
import requests
from rasterio.transform import from_origin
from rio_cogeo.cogeo import cog_translate
from rio_cogeo.profiles import cog_profiles

from tests.conftest import stop_process, wait_for

EMULATOR_PROJECT = "test-project"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class GCSEmulator:
    url: str
    port: int

    def create_bucket(self, name: str) -> str:
        """Create ``name`` through the JSON API (409 = it already exists, also fine)."""
        response = requests.post(
            f"{self.url}/storage/v1/b", params={"project": EMULATOR_PROJECT}, json={"name": name}, timeout=10
        )
        assert response.status_code in (200, 409), response.text
        return name


@pytest.fixture(scope="session")
def gcs_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GCSEmulator]:
    """A real ``gcp-storage-emulator`` process (in memory) on a free port, for the whole session."""
    executable = shutil.which("gcp-storage-emulator", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.skip("gcp-storage-emulator is not installed in this environment")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # A log file, not a pipe: nobody drains a pipe during the session, and a full one would block the emulator.
    log_path = tmp_path_factory.mktemp("gcs-emulator") / "emulator.log"
    log = log_path.open("wb")
    process = subprocess.Popen(
        [executable, "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "-q"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"gcp-storage-emulator exited: {log_path.read_text()[-2000:]}")
        try:
            return requests.get(url + "/", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    try:
        wait_for(answers, timeout=30)  # gcp-storage-emulator answers GET /
        yield GCSEmulator(url=url, port=port)
    finally:
        stop_process(process, timeout=5)
        log.close()


@pytest.fixture(scope="session")
def gcs_bucket(gcs_emulator: GCSEmulator) -> str:
    return gcs_emulator.create_bucket("blobstore-tests")


@pytest.fixture
def gcs_store_url(gcs_emulator: GCSEmulator, gcs_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """``gs://`` URL of a fresh prefix in the emulator's bucket, with ``STORAGE_EMULATOR_HOST`` pointing at it."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator.url)
    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", EMULATOR_PROJECT)
    return f"gs://{gcs_bucket}/t-{uuid.uuid4().hex[:12]}"


class CountingProxy:
    """A TCP proxy on 127.0.0.1 that counts the bytes the upstream server sends back (headers included).

    It measures what actually crosses the wire, whoever the client is (the Python client or GDAL's libcurl).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.bytes_down = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        with self._lock:
            self.bytes_down = 0
            self.connections = 0

    def close(self) -> None:
        self._server.close()

    def _accept_loop(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            self.connections += 1
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        except OSError:
            client.close()
            return
        up = threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True)
        up.start()
        self._pump(upstream, client, True)
        up.join(timeout=5)
        client.close()
        upstream.close()

    def _pump(self, source: socket.socket, sink: socket.socket, count: bool) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if count:
                    with self._lock:
                        self.bytes_down += len(data)
        except OSError:
            pass
        finally:
            try:
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass


@pytest.fixture
def counting_proxy(gcs_emulator: GCSEmulator) -> Iterator[CountingProxy]:
    proxy = CountingProxy(gcs_emulator.port)
    yield proxy
    proxy.close()


def make_cog(
    path: Path,
    *,
    size: int = 512,
    bands: int = 3,
    seed: int = 0,
    blocksize: int = 512,
    levels: int = 64,
) -> Path:
    """Write a seeded uint8 COG (deflate, internal tiles ``blocksize``, overviews) in EPSG:32632, 0.3 m pixels.

    Pixels are uniform noise quantised to ``levels`` values: deflate barely shrinks it, so the file is large
    relative to one tile, like real imagery, while staying quick to compress.
    """
    rng = np.random.default_rng(seed)
    src = path.with_suffix(".src.tif")
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint8",
        "crs": "EPSG:32632",
        "transform": from_origin(500_000, 5_150_000, 0.3, 0.3),
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
    }
    with rasterio.open(src, "w", **profile) as dst:
        step = 1024
        for row in range(0, size, step):
            rows = min(step, size - row)
            noise = rng.integers(0, levels, size=(bands, rows, size), dtype=np.uint8) * (256 // levels)
            dst.write(noise, window=((row, row + rows), (0, size)))
    cog_profile = cog_profiles.get("deflate")
    cog_profile.update(blockxsize=blocksize, blockysize=blocksize)
    cog_translate(src, path, cog_profile, quiet=True, config={"GDAL_NUM_THREADS": "ALL_CPUS"})
    src.unlink()
    return path


@pytest.fixture(scope="session")
def cog_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``cog_factory(size=..., bands=..., seed=...)`` → path of a fresh generated COG."""

    def factory(**kwargs: int) -> Path:
        folder = tmp_path_factory.mktemp("cog")
        return make_cog(folder / "image.tif", **kwargs)

    return factory


@pytest.fixture(scope="session")
def large_cog(cog_factory: Callable[..., Path]) -> Path:
    """4096 x 4096 x 3 uint8, 512 px tiles: tens of MB, for the byte-range tests."""
    return cog_factory(size=4096, bands=3, seed=42)


# --------------------------------------------------------------------------------------------------------------
# Map tiles: images made by the real ingest (these fixtures need Django and a database; imports stay local so
# the blob-store tests above still run with ``-p no:django``).


@pytest.fixture
def ingest_file(project):
    """``ingest_file(path, name=...)`` → a ready Image made from ``path`` by the real pipeline (local store)."""
    from imagery.ingest import ingest_image
    from imagery.models import Image
    from imagery.storage import get_blob_store, image_original_key

    def ingest(path: Path, name: str = "ortho.tif"):
        image = Image.objects.create(project=project, name=name, status=Image.Status.UPLOADED)
        image.original_key = image_original_key(image.pk, path.name)
        get_blob_store().put_file(image.original_key, path)
        image.save(update_fields=["original_key"])
        assert ingest_image(str(image.pk)) == Image.Status.READY, Image.objects.get(pk=image.pk).error
        return Image.objects.get(pk=image.pk)

    return ingest


@pytest.fixture
def tiled_sample(ingest_file, tmp_path):
    """(image, sample): a 512 px generated orthophoto with 8 known trees, ingested to a COG."""
    from imagery.sample import write_sample_geotiff

    sample = write_sample_geotiff(tmp_path / "trees.tif", size=512, trees=8, seed=3)
    return ingest_file(sample.path), sample


@pytest.fixture
def tiled_uint16(ingest_file, tmp_path):
    """A 4-band uint16 image: left half 1000, right half 3000, band b adds 100 * b (band 4 is bright: 9000)."""
    path = tmp_path / "uint16.tif"
    data = np.full((4, 256, 256), 1000, dtype=np.uint16)
    data[:, :, 128:] = 3000
    data += (np.arange(4, dtype=np.uint16) * 100)[:, None, None]
    data[3] = 9000
    profile = {
        "driver": "GTiff",
        "width": 256,
        "height": 256,
        "count": 4,
        "dtype": "uint16",
        "crs": "EPSG:32632",
        "transform": from_origin(316_000, 5_158_000, 0.5, 0.5),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return ingest_file(path, name="uint16.tif")
