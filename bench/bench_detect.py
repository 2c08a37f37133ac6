"""Whole-image detection through the real job system, against the ML core alone on the same cells.

Builds a generated SIZE x SIZE image of trees (a trained 1024 px scene tiled over the image, each copy
turned or flipped), ingests it to a COG, trains a detector on the scene, then:
- runs Detect through the platform: one Celery worker with two pool processes on the real Redis broker
  and PostgreSQL (SpatiaLite when none answers), each cell a task, then merge and exports;
- runs the same cells (same windows, same margins) one after another in this process with
  `workers.ml.predict.predict_window` alone: the single-process baseline;
- runs Detect again on detection areas covering a quarter of the image, to see how time grows with cells.

Environment: BENCH_DETECT_SIZE (default 20000), BENCH_DETECT_CELL (default 2048), BENCH_DATABASE_URL
(default postgis://postgres@127.0.0.1:5432, a database of its own is created and dropped), BENCH_REDIS_URL
(default redis://127.0.0.1:6379/6).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import BenchRow, emit

REPO = Path(__file__).resolve().parent.parent
SIZE = int(os.environ.get("BENCH_DETECT_SIZE", "20000"))
CELL = int(os.environ.get("BENCH_DETECT_CELL", "2048"))
CONCURRENCY = 2
SCENE = 1024


def configure(tmp: Path) -> dict[str, str]:
    """Settings for this process and the worker: a database, broker prefix and blob folder of our own."""
    import psycopg

    base = os.environ.get("BENCH_DATABASE_URL", "postgis://postgres@127.0.0.1:5432")
    name = f"picterra_bench_{os.getpid()}"
    try:
        with psycopg.connect(base.replace("postgis://", "postgresql://") + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        database_url = f"{base}/{name}"
    except psycopg.OperationalError:
        database_url = f"spatialite:///{tmp / 'var' / 'bench.sqlite3'}"
    env = {
        "VAR_DIR": str(tmp / "var"),
        "DATABASE_URL": database_url,
        "BLOBSTORE_URL": str(tmp / "var" / "blobs"),
        "CELERY_BROKER_URL": os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/6"),
        "CELERY_BROKER_KEY_PREFIX": f"bench-{os.getpid()}:",
        "CELERY_WORKER_CONCURRENCY": str(CONCURRENCY),
        "DETECTION_CELL_SIZE": str(CELL),
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "picterra.settings",
    }
    os.environ.update(env)
    return env


def drop_database() -> None:
    from django.db import connections

    url = os.environ["DATABASE_URL"]
    connections.close_all()
    if url.startswith("postgis://"):
        import psycopg

        base, name = url.rsplit("/", 1)
        with psycopg.connect(base.replace("postgis://", "postgresql://") + "/postgres", autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def train_on_scene(tmp: Path):
    """A detector trained on one generated scene; returns (model, model folder, scene)."""
    from workers.ml.config import DetectorConfig
    from workers.ml.model_card import save_model
    from workers.ml.synthetic import labelled_scene, make_scene
    from workers.ml.train import train_detector

    scene = make_scene("trees", seed=11, size=(SCENE, SCENE), gsd=0.3)
    labelled, _ = labelled_scene(scene, tmp / "scene.tif")
    config = DetectorConfig.from_dict({"classes": scene.classes})
    model = train_detector([labelled], config, time_budget_s=40, threads=os.cpu_count() or 1)
    folder = tmp / "model"
    save_model(model, folder)
    return model, folder, scene


def write_big_image(path: Path, scene, size: int = SIZE) -> None:
    """The scene tiled over ``size`` x ``size``, each copy in one of the eight dihedral orientations."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=scene.crs,
        transform=Affine(scene.gsd, 0, scene.transform.c, 0, -scene.gsd, scene.transform.f),
        tiled=True, blockxsize=512, blockysize=512, compress="deflate", photometric="RGB", BIGTIFF="YES",
    )  # fmt: skip
    variants = [np.rot90(scene.image, k, axes=(1, 2)) for k in range(4)]
    variants += [v[:, :, ::-1] for v in variants]
    with rasterio.open(path, "w", **profile) as dst:
        for i, row in enumerate(range(0, size, SCENE)):
            for j, col in enumerate(range(0, size, SCENE)):
                h, w = min(SCENE, size - row), min(SCENE, size - col)
                dst.write(np.ascontiguousarray(variants[(i * 3 + j) % 8][:, :h, :w]), window=Window(col, row, w, h))


def setup_platform(tmp: Path, model_folder: Path, scene):
    import django

    django.setup()
    from bench.accounts import create_bench_account
    from detectors.models import Detector, DetectorClass, DetectorImage, RunStatus, TrainingRun
    from imagery.ingest import ingest_image
    from imagery.models import Image
    from imagery.storage import get_blob_store, image_original_key

    user, organization, project = create_bench_account()
    source = tmp / "big.tif"
    start = time.perf_counter()
    write_big_image(source, scene)
    print(f"wrote {SIZE}x{SIZE}x3 in {time.perf_counter() - start:.0f} s", flush=True)
    image = Image.objects.create(project=project, name="big.tif", status=Image.Status.UPLOADED)
    image.original_key = image_original_key(image.pk, source.name)
    store = get_blob_store()
    store.put_file(image.original_key, source)
    source.unlink()
    image.save(update_fields=["original_key"])
    start = time.perf_counter()
    assert ingest_image(str(image.pk)) == Image.Status.READY
    print(f"ingested in {time.perf_counter() - start:.0f} s", flush=True)
    image.refresh_from_db()
    detector = Detector.objects.create(organization=organization, name="Trees", created_by=user)
    DetectorClass.objects.create(detector=detector, name=scene.classes[0], position=0)
    DetectorImage.objects.create(detector=detector, image=image)
    keys = {}
    for path in sorted(model_folder.iterdir()):
        keys[path.suffix] = f"training-runs/bench/{path.name}"
        store.put_file(keys[path.suffix], path)
    version = TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.SUCCEEDED, weights_key=keys[".safetensors"],
        model_card_key=keys[".json"], created_by=user,
    )  # fmt: skip
    return user, detector, image, version


def start_worker(tmp: Path, env: dict[str, str]) -> subprocess.Popen:
    from picterra.celery import app

    hostname = f"bench-{os.getpid()}@localhost"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "picterra", "worker", "-Q", "default,gpu",
         "--concurrency", str(CONCURRENCY), "--loglevel", "WARNING", "--hostname", hostname,
         "--without-mingle", "--without-gossip"],
        cwd=REPO, env={**os.environ, **env}, stdout=(tmp / "worker.log").open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while not app.control.ping([hostname], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp / "worker.log").read_text()[-3000:])
    return process


def detect(user, detector, image, version) -> tuple[float, object]:
    """Start Detect as the API does and wait for its final state: (wall seconds, run)."""
    from detectors.detection import start_detection
    from detectors.models import DetectionRun, RunStatus

    start = time.perf_counter()
    run = start_detection(detector, [image], user, training_run=version)
    while True:
        run = DetectionRun.objects.get(pk=run.pk)
        if run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
            break
        time.sleep(0.25)
    seconds = time.perf_counter() - start
    assert run.status == RunStatus.SUCCEEDED, run.error
    return seconds, run


def single_process(run, image) -> tuple[float, int]:
    """The same cells, one after another, with the ML core alone: (seconds, objects before dedupe)."""
    import rasterio
    import torch
    from rasterio.windows import Window

    from imagery.storage import get_blob_store
    from workers.ml.grid import GridCell
    from workers.ml.model_card import load_model

    torch.set_num_threads(os.cpu_count() or 1)
    store = get_blob_store()
    with tempfile.TemporaryDirectory() as folder:
        for key in (run.training_run.weights_key, run.training_run.model_card_key):
            with store.open_read(key) as src, open(Path(folder) / key.rsplit("/", 1)[-1], "wb") as dst:
                dst.write(src.read())
        model = load_model(Path(folder))
    from workers.ml.predict import predict_window

    found = 0
    start = time.perf_counter()
    with rasterio.Env(**store.gdal_env()), rasterio.open(store.gdal_path(image.cog_key)) as src:
        for cell in run.cells.order_by("key"):
            col, row, w, h = cell.window
            padded = GridCell(0, 0, Window(col, row, w, h)).padded(cell.margin, src.width, src.height)
            found += len(predict_window(model, src, padded))
    return time.perf_counter() - start, found


def quarter_area(detector, image) -> None:
    from django.contrib.gis.geos import Polygon

    from detectors.models import Area

    minx, miny, maxx, maxy = image.footprint.extent
    geometry = Polygon.from_bbox((minx, miny + (maxy - miny) / 2, minx + (maxx - minx) / 2, maxy))
    geometry.srid = 4326
    Area.objects.create(detector=detector, image=image, kind=Area.Kind.DETECTION, geometry=geometry)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    worker = None
    env = configure(tmp)
    try:
        start = time.perf_counter()
        _, model_folder, scene = train_on_scene(tmp)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
        user, detector, image, version = setup_platform(tmp, model_folder, scene)
        from django.db import connections

        connections.close_all()
        worker = start_worker(tmp, env)
        full_s, full = detect(user, detector, image, version)
        print(f"detect: {full.cells_total} cells, {full.objects_count} objects in {full_s:.1f} s", flush=True)
        quarter_area(detector, image)
        quarter_s, quarter = detect(user, detector, image, version)
        print(f"detect on a quarter: {quarter.cells_total} cells in {quarter_s:.1f} s", flush=True)
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
        worker = None
        cells = list(full.cells.all())
        cell_seconds = sum(c.seconds or 0 for c in cells)
        last_cell = max(c.updated_at for c in cells)
        first_claim = full.started_at or full.created_at
        finish_s = (full.finished_at - last_cell).total_seconds()
        print(
            f"phases: queue->first cell {(first_claim - full.created_at).total_seconds():.1f} s, cells "
            f"{(last_cell - first_claim).total_seconds():.1f} s (work {cell_seconds:.1f} s over {CONCURRENCY}), "
            f"merge+exports {finish_s:.1f} s",
            flush=True,
        )
        margin = cells[0].margin
        alone_s, alone_objects = single_process(full, image)
        print(f"single process: {alone_s:.1f} s, {alone_objects} objects", flush=True)
    finally:
        if worker is not None and worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        if "django" in sys.modules:
            drop_database()
        shutil.rmtree(tmp, ignore_errors=True)

    megapixels = SIZE * SIZE / 1e6
    # Work the cells themselves did (read, model, polygons, their own database writes), spread over the
    # pool; the rest of the wall time is queueing, scheduling, merging and exports.
    overhead = max(0.0, full_s - cell_seconds / CONCURRENCY) / full_s
    per_cell_full, per_cell_quarter = full_s / full.cells_total, quarter_s / quarter.cells_total
    conditions = (
        f"{SIZE}x{SIZE} RGB generated trees, cells of {CELL} px + {margin} px margin, "
        f"{full.cells_total} cells, {full.objects_count} objects; 1 Celery worker x {CONCURRENCY} processes "
        f"({os.cpu_count()} cores), Redis broker, {os.environ['DATABASE_URL'].split(':')[0]}; "
        f"single process: the same cells with workers.ml alone in {alone_s:.0f} s; platform {full_s:.0f} s"
    )
    emit(
        [
            BenchRow("detect_mp_per_s", megapixels / full_s, "MP/s", "as high as possible", conditions),
            BenchRow("detect_vs_single_process", alone_s / full_s, "ratio", ">= 0.9", conditions),
            BenchRow("detect_overhead_share", overhead, "share", "small", conditions),
            BenchRow(
                "detect_seconds_per_cell_growth",
                per_cell_full / per_cell_quarter,
                "ratio",
                "~1 (linear in cells)",
                f"seconds per cell over the whole image ({full.cells_total} cells, {per_cell_full:.2f} s) / "
                f"over a quarter of it ({quarter.cells_total} cells, {per_cell_quarter:.2f} s)",
            ),
        ]
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
