"""Map tiles: our tile server against TiTiler serving the same COG, same tile addresses, same run.

Both servers run on loopback with the same number of processes; a client with 8 threads (one keep-alive
connection each) fetches the same fixed set of 500 XYZ PNG tiles at mixed zooms from each, after the same
warm-up. Rows: `tiles_vs_titiler` (requests/s, ours / TiTiler) and `tile_p95_ms` (ours).

Ours: `gunicorn imagery.tile_wsgi` (the production tile process) on an embedded configuration made here
(temporary VAR_DIR, SpatiaLite, local blob store), a user, an API key and an image ingested by the real
pipeline; requests authenticate with X-Api-Key as scripts do. TiTiler: `titiler.core` + uvicorn, installed
with pinned versions into a virtualenv of its own under var/bench-titiler (never into the project's).
BENCH_TILES_SIZE sets the image side in pixels (default 4096).
"""

from __future__ import annotations

import http.client
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.report import BenchRow, emit
from bench.sources import write_striped_geotiff

REPO = Path(__file__).resolve().parent.parent
SIZE = int(os.environ.get("BENCH_TILES_SIZE", "4096"))
REQUESTS = 500
CONCURRENCY = 8
WARMUP = 24
# Each server is measured PASSES times, alternating, so that load from other processes on the machine falls on
# both alike; req/s is the median pass, latencies are pooled over all passes.
PASSES = 3
WORKERS = 2  # processes per server (the machine has 2 cores)
OUR_THREADS = 4
TITILER_VENV = REPO / "var" / "bench-titiler"
TITILER_PINS = ["titiler.core==2.4.0", "uvicorn==0.54.0", "rio-tiler==9.4.12", "rasterio==1.4.4"]

TITILER_APP = """
from fastapi import FastAPI
from titiler.core.errors import DEFAULT_STATUS_CODES, add_exception_handlers
from titiler.core.factory import TilerFactory

app = FastAPI()
app.include_router(TilerFactory().router, prefix="/cog")
add_exception_handlers(app, DEFAULT_STATUS_CODES)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ensure_titiler() -> Path:
    """The benchmark's own virtualenv with TiTiler; reinstalled only when the pins change."""
    marker = TITILER_VENV / "bench-pins.txt"
    python = TITILER_VENV / "bin" / "python"
    if marker.exists() and marker.read_text() == "\n".join(TITILER_PINS) and python.exists():
        return TITILER_VENV
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(TITILER_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *TITILER_PINS], check=True)
    marker.write_text("\n".join(TITILER_PINS))
    print(f"installed {', '.join(TITILER_PINS)} into {TITILER_VENV} in {time.perf_counter() - start:.0f} s")
    return TITILER_VENV


def setup_platform(tmp: Path) -> tuple[dict[str, str], str, object]:
    """Embedded settings in ``tmp``, an ingested image and an API key: (server env, raw key, image)."""
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BLOBSTORE_URL", "CELERY_BROKER_URL")},
        "VAR_DIR": str(tmp / "var"),
        "DATABASE_URL": f"spatialite:///{tmp / 'var' / 'bench.sqlite3'}",
        "BLOBSTORE_URL": str(tmp / "var" / "blobs"),
        "PYTHONPATH": str(REPO),
    }
    os.environ.update(env)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "picterra.settings")
    import django

    django.setup()
    from bench.accounts import create_bench_account
    from imagery.ingest import ingest_image
    from imagery.models import Image
    from imagery.storage import get_blob_store, image_original_key
    from picterra.organizations.models import ApiKey

    user, organization, project = create_bench_account()
    source = tmp / "source.tif"
    write_striped_geotiff(source, SIZE, gsd=0.3)
    image = Image.objects.create(project=project, name="bench.tif", status=Image.Status.UPLOADED)
    image.original_key = image_original_key(image.pk, source.name)
    get_blob_store().put_file(image.original_key, source)
    image.save(update_fields=["original_key"])
    start = time.perf_counter()
    assert ingest_image(str(image.pk)) == Image.Status.READY
    image.refresh_from_db()
    print(f"ingested {SIZE}x{SIZE}x3 in {time.perf_counter() - start:.1f} s")
    _, raw = ApiKey.issue(user, organization, name="bench")
    from django.db import connections

    connections.close_all()  # the servers are the only database users from here on
    return env, raw, image


def tile_addresses(image, cog_path: str) -> list[tuple[int, int, int]]:
    """500 tiles inside the image: every tile of the low zooms, the rest spread over the three highest."""
    from rio_tiler.io import Reader

    from imagery import tiles

    minzoom, maxzoom = tiles.zoom_range(image.crs, image.bounds, image.width, image.height)
    left, bottom, right, top = tiles.mercator_bounds(image.crs, tuple(image.bounds))
    by_zoom: dict[int, list[tuple[int, int, int]]] = {}
    with Reader(cog_path) as reader:
        for z in range(minzoom, maxzoom + 2):  # one level of over-zoom, as maps ask on high-DPI screens
            first = tiles.WEB_MERCATOR.tile(*tiles.WEB_MERCATOR.lnglat(left, top), z)
            last = tiles.WEB_MERCATOR.tile(*tiles.WEB_MERCATOR.lnglat(right, bottom), z)
            by_zoom[z] = [
                (z, x, y)
                for x in range(first.x, last.x + 1)
                for y in range(first.y, last.y + 1)
                if reader.tile_exists(x, y, z)
            ]
    rng = random.Random(42)
    chosen = [t for z in range(minzoom, maxzoom - 1) for t in by_zoom[z]]
    remaining = REQUESTS - len(chosen)
    for z, share in ((maxzoom - 1, 0.2), (maxzoom, 0.4), (maxzoom + 1, 0.4)):
        count = min(len(by_zoom[z]), round(remaining * share) if z != maxzoom + 1 else REQUESTS - len(chosen))
        chosen += rng.sample(by_zoom[z], count)
    rng.shuffle(chosen)
    return chosen[:REQUESTS]


def gunicorn_command(app: str, port: int, workers: int, threads: int) -> list[str]:
    """The platform's WSGI ``app`` under gunicorn from this virtualenv, as the benches serve it."""
    return [str(Path(sys.executable).parent / "gunicorn"), app, "--bind", f"127.0.0.1:{port}",
            "--workers", str(workers), "--threads", str(threads), "--no-control-socket"]


def start(cmd: list[str], env: dict[str, str], log: Path, port: int, health: str) -> subprocess.Popen:
    process = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 90
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited: {log.read_text()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", health)
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{cmd[0]} did not answer: {log.read_text()[-2000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen) -> None:
    """Stop a server we started, with the workers it forked (its own process group)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def load(port: int, paths: list[str], headers: dict[str, str]) -> tuple[float, list[float]]:
    """Fetch every path once with CONCURRENCY threads; (requests per second, latencies in ms)."""
    lock = threading.Lock()
    queue = list(reversed(paths))
    latencies: list[float] = []

    def worker() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while True:
            with lock:
                if not queue:
                    break
                path = queue.pop()
            begin = time.perf_counter()
            connection.request("GET", path, headers=headers)
            response = connection.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - begin) * 1000
            if response.status != 200 or not body:
                raise RuntimeError(f"GET {path} answered {response.status}: {body[:200]!r}")
            with lock:
                latencies.append(elapsed)
        connection.close()

    begin = time.perf_counter()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for future in [pool.submit(worker) for _ in range(CONCURRENCY)]:
            future.result()
    return len(paths) / (time.perf_counter() - begin), latencies


def fetch(port: int, path: str, headers: dict[str, str]) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read()
    assert response.status == 200, (path, response.status, body[:200])
    return body


def same_pixels(ours: bytes, theirs: bytes) -> bool:
    """Both PNGs show the same RGB where TiTiler's alpha says there is data (ours drops alpha when opaque)."""
    from PIL import Image as PILImage

    a = np.asarray(PILImage.open(io.BytesIO(ours)).convert("RGBA"))
    b = np.asarray(PILImage.open(io.BytesIO(theirs)).convert("RGBA"))
    valid = b[..., 3] == 255
    return bool(np.array_equal(a[..., 3] == 255, valid) and np.array_equal(a[..., :3][valid], b[..., :3][valid]))


def main() -> None:
    venv = ensure_titiler()
    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp_name:
        tmp = Path(tmp_name)
        env, api_key, image = setup_platform(tmp)
        from imagery import tiles
        from imagery.storage import get_blob_store

        cog = get_blob_store().gdal_path(image.cog_key)
        cog_mb = Path(cog).stat().st_size / 1e6
        addresses = tile_addresses(image, cog)
        zooms = sorted({z for z, _, _ in addresses})
        mix = ", ".join(f"z{z}: {sum(1 for a in addresses if a[0] == z)}" for z in zooms)
        print(f"{len(addresses)} tiles ({mix})")
        ours_paths = [
            f"/tiles/images/{image.pk}/{image.cog_version}/{z}/{x}/{y}@1x.png?bands=1,2,3&rescale=0,255"
            for z, x, y in addresses
        ]
        theirs_paths = [f"/cog/tiles/WebMercatorQuad/{z}/{x}/{y}.png?url={cog}" for z, x, y in addresses]
        gdal_env = {
            k: str(v // (1024 * 1024)) if k == "GDAL_CACHEMAX" else str(v) for k, v in tiles.TILE_GDAL_ENV.items()
        }
        ours_port, theirs_port = free_port(), free_port()
        ours_cmd = gunicorn_command("imagery.tile_wsgi", ours_port, WORKERS, OUR_THREADS)
        (tmp / "titiler_app.py").write_text(TITILER_APP)
        theirs_cmd = [
            str(venv / "bin" / "uvicorn"),
            "titiler_app:app",
            "--app-dir",
            str(tmp),
            "--host",
            "127.0.0.1",
            "--port",
            str(theirs_port),
            "--workers",
            str(WORKERS),
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        theirs_env = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "/tmp"), **gdal_env}
        ours_headers = {"X-Api-Key": api_key}
        results: dict[str, list[tuple[float, list[float]]]] = {"ours": [], "titiler": []}
        servers = []
        try:
            servers.append(start(ours_cmd, env, tmp / "ours.log", ours_port, "/healthz"))
            servers.append(start(theirs_cmd, theirs_env, tmp / "titiler.log", theirs_port, "/docs"))
            for i in range(0, 40, 8):  # the same tiles, the same pixels: both do the same work
                assert same_pixels(
                    fetch(ours_port, ours_paths[i], ours_headers), fetch(theirs_port, theirs_paths[i], {})
                ), f"tile {addresses[i]} differs between the servers"
            warm = min(WARMUP, len(addresses))
            load(ours_port, ours_paths[-warm:], ours_headers)
            load(theirs_port, theirs_paths[-warm:], {})
            for _ in range(PASSES):
                results["ours"].append(load(ours_port, ours_paths, ours_headers))
                results["titiler"].append(load(theirs_port, theirs_paths, {}))
        finally:
            for server in servers:
                stop(server)

    def summary(name: str) -> tuple[float, float, float]:
        latencies = [ms for _rps, run in results[name] for ms in run]
        rps = float(np.median([rps for rps, _run in results[name]]))
        return rps, float(np.percentile(latencies, 50)), float(np.percentile(latencies, 95))

    ours_rps, ours_p50, ours_p95 = summary("ours")
    theirs_rps, theirs_p50, theirs_p95 = summary("titiler")
    print(f"ours: {ours_rps:.1f} req/s, p50 {ours_p50:.1f} ms, p95 {ours_p95:.1f} ms")
    print(f"TiTiler: {theirs_rps:.1f} req/s, p50 {theirs_p50:.1f} ms, p95 {theirs_p95:.1f} ms")
    print(json.dumps({"req/s per pass": {k: [round(r[0], 1) for r in v] for k, v in results.items()}}))
    conditions = (
        f"{SIZE}x{SIZE}x3 uint8 COG ({cog_mb:.0f} MB, ingested), {len(addresses)} PNG 256 tiles ({mix}), "
        f"concurrency {CONCURRENCY}, loopback, {os.cpu_count()} cores; ours gunicorn {WORKERS}x{OUR_THREADS} "
        f"gthread + X-Api-Key; TiTiler {TITILER_PINS[0].split('==')[1]} uvicorn {WORKERS} workers; "
        f"median of {PASSES} alternating passes"
    )
    emit(
        [
            BenchRow(
                "tiles_vs_titiler",
                ours_rps / theirs_rps,
                "ratio",
                ">= 1.0",
                f"{conditions}; ours {ours_rps:.1f} req/s p50 {ours_p50:.0f} ms, "
                f"TiTiler {theirs_rps:.1f} req/s p50 {theirs_p50:.0f} ms p95 {theirs_p95:.0f} ms",
            ),
            BenchRow("tile_p95_ms", ours_p95, "ms", f"<= TiTiler's ({theirs_p95:.0f} ms)", conditions),
        ]
    )


if __name__ == "__main__":
    main()
