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
import sys
import tempfile
import time
from pathlib import Path

from bench.detect_platform import configure, detect, drop_bench_state, setup_platform, start_worker, train_on_scene
from bench.report import BenchRow, emit

SIZE = int(os.environ.get("BENCH_DETECT_SIZE", "20000"))
CELL = int(os.environ.get("BENCH_DETECT_CELL", "2048"))
CONCURRENCY = 2


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
    env = configure(tmp, CONCURRENCY)
    try:
        start = time.perf_counter()
        _, model_folder, scene = train_on_scene(tmp)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
        user, detector, image, version = setup_platform(tmp, model_folder, scene, SIZE)
        from django.db import connections

        connections.close_all()
        worker = start_worker(tmp, env, CONCURRENCY)
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
            drop_bench_state()
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
