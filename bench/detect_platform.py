"""What the whole-image detection benches share: a database and broker of their own, a detector trained on a
generated 1024 px scene, that scene tiled over a large image, ingested, a Celery worker with real processes,
and Detect started as the API starts it (`bench_detect`, `bench_ceiling`).

The large image is the scene repeated, each copy in one of the eight dihedral orientations: copy (i, j) (row,
column, in scene sides) is ``scene_variant(scene, (i * 3 + j) % 8)``; ``big_image_region`` builds any part of
it in memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
SCENE = 1024


def configure(tmp: Path, concurrency: int, name: str = "bench", redis_url: str = "redis://127.0.0.1:6379/6") -> dict:
    """Settings for this process and the worker: a database, broker prefix and blob folder of our own.

    The database is ``picterra_<name>_<pid>`` on BENCH_DATABASE_URL (default the local PostGIS; SpatiaLite
    when none answers); the broker is BENCH_REDIS_URL (default ``redis_url``) under a prefix of this process.
    """
    import psycopg

    base = os.environ.get("BENCH_DATABASE_URL", "postgis://postgres@127.0.0.1:5432")
    database = f"picterra_{name}_{os.getpid()}"
    try:
        with psycopg.connect(base.replace("postgis://", "postgresql://") + "/postgres", autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {database}")
        database_url = f"{base}/{database}"
    except psycopg.OperationalError:
        database_url = f"spatialite:///{tmp / 'var' / 'bench.sqlite3'}"
    env = {
        "VAR_DIR": str(tmp / "var"),
        "DATABASE_URL": database_url,
        "BLOBSTORE_URL": str(tmp / "var" / "blobs"),
        "CELERY_BROKER_URL": os.environ.get("BENCH_REDIS_URL", redis_url),
        "CELERY_BROKER_KEY_PREFIX": f"{name}-{os.getpid()}:",
        "CELERY_WORKER_CONCURRENCY": str(concurrency),
        "DETECTION_CELL_SIZE": os.environ.get("BENCH_DETECT_CELL", "2048"),
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "picterra.settings",
    }
    os.environ.update(env)
    return env


def drop_bench_state() -> None:
    """What ``configure`` made: the database, and the broker's keys under this process's prefix (the worker's
    queues and bindings would otherwise stay in Redis after every run)."""
    import redis
    from django.db import connections

    broker = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    try:
        stale = list(broker.scan_iter(match=os.environ["CELERY_BROKER_KEY_PREFIX"] + "*", count=1000))
        if stale:
            broker.delete(*stale)
    finally:
        broker.close()
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


def scene_variant(scene, k: int) -> np.ndarray:
    """The scene's pixels (3, SCENE, SCENE) turned by k x 90 degrees, mirrored left-right for k >= 4."""
    turned = np.rot90(scene.image, k % 4, axes=(1, 2))
    return turned[:, :, ::-1] if k >= 4 else turned


def variant_of_copy(i: int, j: int) -> int:
    """Which orientation the copy at row i, column j (in scene sides) of the large image has."""
    return (i * 3 + j) % 8


def scene_copies(row: int, col: int, height: int, width: int, size: int):
    """The parts of the ``size`` x ``size`` large image's copies of the scene that the region (row, col,
    height, width) covers: (orientation, slices in the region, slices in the copy) for each."""
    for r in range(max(0, row) // SCENE * SCENE, min(size, row + height), SCENE):
        for c in range(max(0, col) // SCENE * SCENE, min(size, col + width), SCENE):
            r0, r1 = max(row, r), min(row + height, r + SCENE, size)
            c0, c1 = max(col, c), min(col + width, c + SCENE, size)
            yield (
                variant_of_copy(r // SCENE, c // SCENE),
                (slice(r0 - row, r1 - row), slice(c0 - col, c1 - col)),
                (slice(r0 - r, r1 - r), slice(c0 - c, c1 - c)),
            )


def big_image_region(scene, row: int, col: int, height: int, width: int, size: int) -> np.ndarray:
    """Pixels (3, height, width) of the ``size`` x ``size`` large image from (row, col); zeros outside it."""
    out = np.zeros((3, height, width), np.uint8)
    for k, (rows, cols), (src_rows, src_cols) in scene_copies(row, col, height, width, size):
        out[:, rows, cols] = scene_variant(scene, k)[:, src_rows, src_cols]
    return out


def write_big_image(path: Path, scene, size: int) -> None:
    """The scene tiled over ``size`` x ``size`` (see the module's docstring), as a tiled GeoTIFF."""
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=scene.crs,
        transform=Affine(scene.gsd, 0, scene.transform.c, 0, -scene.gsd, scene.transform.f),
        tiled=True, blockxsize=512, blockysize=512, compress="deflate", photometric="RGB", BIGTIFF="YES",
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, SCENE):
            for col in range(0, size, SCENE):
                h, w = min(SCENE, size - row), min(SCENE, size - col)
                dst.write(big_image_region(scene, row, col, h, w, size), window=Window(col, row, w, h))


def setup_platform(tmp: Path, model_folder: Path, scene, size: int):
    """Migrate, ingest the large image, and store the trained model as a detector's succeeded version:
    returns (user, detector, image, version)."""
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
    write_big_image(source, scene, size)
    print(f"wrote {size}x{size}x3 in {time.perf_counter() - start:.0f} s", flush=True)
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


def start_worker(tmp: Path, env: dict, concurrency: int, app: str = "picterra", log: str = "worker.log"):
    """A Celery worker of ``app`` (a module naming the Celery application) with ``concurrency`` pool
    processes on both queues, started in the repository and answering a ping: the Popen (its own session)."""
    from picterra.celery import app as celery_app

    hostname = f"bench-{os.getpid()}-{concurrency}@localhost"
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", "default,gpu",
         "--concurrency", str(concurrency), "--loglevel", "WARNING", "--hostname", hostname,
         "--without-mingle", "--without-gossip"],
        cwd=REPO, env={**os.environ, **env}, stdout=(tmp / log).open("w"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 90
    while not celery_app.control.ping([hostname], timeout=0.5):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError((tmp / log).read_text()[-3000:])
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
