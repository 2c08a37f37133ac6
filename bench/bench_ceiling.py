"""The CPU side's ceiling: whole-image detection through the platform with a network that costs nothing.

What a GPU machine's CPUs must keep up with: everything a detection does around the network (Celery cells,
COG reads, tiling, softmax and blending, instances, polygons, lon/lat WKB, database writes, merge, exports),
with the network replaced by a stand-in that answers the real network's outputs at no cost
(``bench/standin.py``: the trained network's logits recorded once over the generated scene the large image
repeats). Same image, detector and platform as ``bench_detect`` (``bench/detect_platform.py``):
- trains a detector on the scene and records its outputs over the scene's eight orientations;
- ingests the SIZE x SIZE image, then runs Detect with one Celery worker of the bench's own application
  (``bench/ceiling_worker.py``: the platform's, with the stand-in in each pool process and phases timed, wall
  and CPU, the garbage collector's passes apart) with 1 and then 2 pool processes (BENCH_CEILING_PROCESSES), 1
  PyTorch thread each, on the real Redis broker and PostgreSQL;
- compares the real network and the stand-in on one cell (objects found), and profiles that cell in this
  process (cProfile) to say where a cell's time goes.

Megapixels per second run from creating the run to its succeeded state, merge and exports included. Beside the
worker's CPU, each run reports that of PostgreSQL's and Redis' processes on this machine (``servers_cpu_s``).

Environment: BENCH_CEILING_SIZE (default 20000), BENCH_CEILING_PROCESSES (default "1,2"), BENCH_DETECT_CELL
(default 2048), BENCH_DATABASE_URL (default postgis://postgres@127.0.0.1:5432, a database of its own is
created and dropped), BENCH_REDIS_URL (default redis://127.0.0.1:6379/7).
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.detect_platform import configure, detect, drop_bench_state, setup_platform, start_worker, train_on_scene
from bench.report import BenchRow, emit

SIZE = int(os.environ.get("BENCH_CEILING_SIZE", "20000"))
PROCESSES = [int(n) for n in os.environ.get("BENCH_CEILING_PROCESSES", "1,2").split(",")]

# How the phases the worker times (bench/ceiling_worker.py) nest: each parent's own time is what its
# children leave.
PARTS = {
    "cell": ["detect_in_cell", "lonlat", "lonlat_wkb", "border_flags", "db_writes"],
    "db_writes": ["export_parts"],
    "detect_in_cell": ["read", "probabilities", "instances", "polygons"],
    "probabilities": ["stand_in"],
    "finish": ["merge", "exports"],
}
LABELS = {
    "read": "COG read (window + margin)",
    "probabilities": "softmax, blending, tiling (stand-in excluded)",
    "stand_in": "stand-in network (recorded logits)",
    "instances": "instances (seeds, growth)",
    "polygons": "polygons (tracing, simplifying)",
    "detect_in_cell": "ownership filter, rest of detect_in_cell",
    "lonlat": "to lon/lat",
    "lonlat_wkb": "WKB, areas",
    "border_flags": "which objects lie along cell borders",
    "db_writes": "database writes (objects, cell, progress)",
    "export_parts": "export parts (a cell's objects away from borders)",
    "cell": "claim, model, region, COG open, rows (rest of a cell)",
    "merge": "merge across cells",
    "exports": "exports (GeoJSON, GeoPackage, CSV; from the parts)",
    "finish": "rest of the final step",
}


@dataclass
class Measured:
    processes: int
    seconds: float
    run: object
    phases: dict[str, tuple[float, float]]  # own (wall, CPU) seconds per phase, summed over the pool processes
    worker_cpu_s: float  # CPU seconds of the worker's processes during the run
    machine_busy: float  # share of the machine's CPU time busy during the run (every process on it)
    load: tuple[float, float]  # 1-minute load average before and after
    servers_cpu_s: dict[str, float]  # CPU seconds of PostgreSQL's and Redis' processes on this machine

    @property
    def mp_per_s(self) -> float:
        return SIZE * SIZE / 1e6 / self.seconds


SERVERS = {"PostgreSQL": "postgres", "Redis": "redis-server"}  # process names (/proc/<pid>/stat's comm)


def servers_cpu_s() -> dict[str, float]:
    """CPU seconds so far of the database's and the broker's processes on this machine, by server (the
    backends that have exited included: a parent's reaped children's time is in its own counters); servers
    elsewhere are not seen."""
    tick = os.sysconf("SC_CLK_TCK")
    total = dict.fromkeys(SERVERS.values(), 0)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name, fields = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        if name in total:
            total[name] += sum(int(f) for f in fields[11:15])  # utime, stime, reaped children's utime, stime
    return {server: total[name] / tick for server, name in SERVERS.items()}


def process_group_cpu_s(group: int) -> float:
    """User + system CPU seconds of the live processes of a process group."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == group:  # pgrp
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return sum(values) - idle, sum(values)


def own_phases(folder: Path) -> dict[str, tuple[float, float]]:
    """The worker's phase times, summed over its processes, each less the time of its nested phases: (wall
    seconds, CPU seconds of the process meanwhile). Wall beyond CPU is waiting (the database, the disk, the other
    processes on the same cores)."""
    total: dict[str, list[float]] = {}
    for path in folder.glob("*.json"):
        for phase, (seconds, _, cpu) in json.loads(path.read_text()).items():
            sums = total.setdefault(phase, [0.0, 0.0])
            sums[0] += seconds
            sums[1] += cpu
    own = {phase: (wall, cpu) for phase, (wall, cpu) in total.items()}
    for parent, children in PARTS.items():
        if parent in own:
            wall, cpu = own[parent]
            for child in children:
                child_wall, child_cpu = total.get(child, (0.0, 0.0))
                wall, cpu = wall - child_wall, cpu - child_cpu
            own[parent] = (wall, cpu)
    return own


def measure(tmp: Path, env: dict, processes: int, outputs: Path, platform) -> Measured:
    """Detect over the whole image with a stand-in worker of ``processes`` pool processes."""
    folder = Path(tempfile.mkdtemp(dir=tmp, prefix=f"phases-{processes}-"))
    worker_env = {
        **env,
        "CELERY_WORKER_CONCURRENCY": str(processes),
        "WORKER_TORCH_THREADS": "1",
        "BENCH_STANDIN_OUTPUTS": str(outputs),
        "BENCH_STANDIN_SIZE": str(SIZE),
        "BENCH_CEILING_PHASES": str(folder),
    }
    worker = start_worker(tmp, worker_env, processes, app="bench.ceiling_worker", log=f"worker-{processes}.log")
    try:
        load_before, cpu_before = os.getloadavg()[0], process_group_cpu_s(worker.pid)
        busy_before, all_before, servers_before = *machine_cpu(), servers_cpu_s()
        seconds, run = detect(*platform)
        busy_after, all_after, servers_after = *machine_cpu(), servers_cpu_s()
        cpu = process_group_cpu_s(worker.pid) - cpu_before
        load_after = os.getloadavg()[0]
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=60)
    busy = (busy_after - busy_before) / max(1, all_after - all_before)
    servers = {name: servers_after[name] - servers_before[name] for name in servers_after}
    return Measured(processes, seconds, run, own_phases(folder), cpu, busy, (load_before, load_after), servers)


def forget_objects(run) -> None:
    """Delete a measured run's objects so the next run writes into a table of the same size."""
    from django.db import connection

    from detectors.models import DetectedObject

    DetectedObject.objects.filter(detection_run=run).delete()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"VACUUM ANALYZE {DetectedObject._meta.db_table}")


def one_cell(model, run, image, outputs: Path) -> tuple[int, int, str]:
    """On one inner cell of ``run``: (objects the real network finds, objects the stand-in finds, profiles of
    the stand-in's cell: detect_in_cell and the lon/lat WKB, then the objects' database insert as
    ``DetectionCellState.succeed`` does it, rolled back)."""
    import rasterio
    import torch
    from django.db import transaction

    from bench.standin import RecordedOutputs, install_window_positions, use_recorded_network
    from detectors.detection import detection_region, model_class_ids
    from detectors.results import NewObject, insert_objects, stored_geometries
    from imagery.storage import get_blob_store
    from workers.ml.grid import GridCell
    from workers.ml.predict import detect_in_cell

    torch.set_num_threads(os.cpu_count() or 1)
    cells = list(run.cells.order_by("key"))
    cell = next((c for c in cells if c.window[0] > 0 and c.window[1] > 0), cells[0])
    grid_cell = GridCell(0, 0, rasterio.windows.Window(*cell.window))
    region = detection_region(run.detector_id, image)
    store = get_blob_store()
    with rasterio.Env(**store.gdal_env()), rasterio.open(store.gdal_path(image.cog_key)) as src:
        real = len(detect_in_cell(model, src, grid_cell, cell.margin, region))
        install_window_positions()
        use_recorded_network(model, RecordedOutputs(outputs, SIZE))
        torch.set_num_threads(1)
        detect_in_cell(model, src, grid_cell, cell.margin, region)  # warm: the recorded maps into the page cache
        profiler = cProfile.Profile()
        profiler.enable()
        found = detect_in_cell(model, src, grid_cell, cell.margin, region)
        stored = stored_geometries([d.geometry for d in found], image.crs)
        profiler.disable()
    class_ids = model_class_ids(run.training_run, list(model.config.classes))
    rows = [
        NewObject(None, run.pk, image.pk, class_ids[d.class_name], "profiled", geometry, d.score, area_m2)
        for d, (geometry, area_m2) in zip(found, stored, strict=True)
    ]
    writes = cProfile.Profile()
    with transaction.atomic():
        writes.enable()
        insert_objects(rows)
        writes.disable()
        transaction.set_rollback(True)
    text = io.StringIO()
    text.write("detect_in_cell + lon/lat WKB:\n")
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(18)
    text.write(f"inserting its {len(rows)} objects (detectors.results.insert_objects, rolled back):\n")
    pstats.Stats(writes, stream=text).sort_stats("tottime").print_stats(12)
    return real, len(found), text.getvalue()


def breakdown(measured: Measured) -> str:
    phases = {phase: times for phase, times in measured.phases.items() if phase != "gc"}  # gc: inside the others
    busy = sum(wall for wall, _ in phases.values())
    cpu = sum(c for _, c in phases.values())
    lines = [
        f"where the worker's time went, {measured.processes} process(es), {busy:.1f} s busy in tasks, "
        f"{cpu:.1f} CPU s of it:",
        f"  {'':<55} {'wall':>8}  {'share':>6}  {'CPU':>8}",
    ]
    for phase, label in LABELS.items():
        seconds, phase_cpu = measured.phases.get(phase, (0.0, 0.0))
        lines.append(f"  {label:<55} {seconds:8.1f} s  {seconds / busy:6.1%}  {phase_cpu:8.1f} s")
    gc_wall, gc_cpu = measured.phases.get("gc", (0.0, 0.0))
    label = "of all these, the garbage collector"
    lines.append(f"  {label:<55} {gc_wall:8.1f} s  {gc_wall / busy:6.1%}  {gc_cpu:8.1f} s")
    return "\n".join(lines)


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    env = configure(tmp, PROCESSES[0], name="ceiling", redis_url="redis://127.0.0.1:6379/7")
    measured: list[Measured] = []
    try:
        start = time.perf_counter()
        model, model_folder, scene = train_on_scene(tmp)
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
        from bench.standin import record_outputs
        from workers.ml.predict import probability_stride

        start = time.perf_counter()
        stride = probability_stride(model.config, model.recipe)
        outputs = record_outputs(model.network, scene, tmp / "outputs.npy", stride)
        print(f"recorded the network's outputs over the scene in {time.perf_counter() - start:.0f} s", flush=True)
        platform = setup_platform(tmp, model_folder, scene, SIZE)
        from django.db import connections

        connections.close_all()
        for processes in PROCESSES:
            if measured:
                forget_objects(measured[-1].run)
                connections.close_all()
            m = measure(tmp, env, processes, outputs, platform)
            measured.append(m)
            print(
                f"{processes} process(es): {m.run.cells_total} cells, {m.run.objects_count} objects in "
                f"{m.seconds:.1f} s = {m.mp_per_s:.2f} MP/s; worker CPU {m.worker_cpu_s:.0f} s; "
                + "".join(f"{name} CPU {cpu:.0f} s; " for name, cpu in m.servers_cpu_s.items())
                + f"machine busy {m.machine_busy:.0%}; load {m.load[0]:.2f} -> {m.load[1]:.2f}",
                flush=True,
            )
            print(breakdown(m), flush=True)
        real, standin, profile = one_cell(model, measured[-1].run, platform[2], outputs)
        print(f"one inner cell: the real network finds {real} objects, the stand-in {standin}", flush=True)
        print(profile, flush=True)
    finally:
        if "django" in sys.modules:
            drop_bench_state()
        shutil.rmtree(tmp, ignore_errors=True)

    by_processes = {m.processes: m for m in measured}
    widest = measured[-1]
    run = widest.run
    cores = os.cpu_count() or 1
    from django.conf import settings  # configured by ``configure`` (the environment) before Django loads

    conditions = (
        f"{SIZE}x{SIZE} RGB generated trees, {run.cells_total} cells, {run.objects_count} objects; network replaced "
        f"by recorded outputs (one cell: real {real} objects, stand-in {standin}); 1 Celery worker, 1 torch thread "
        f"per process, Redis, {os.environ['DATABASE_URL'].split(':')[0]}, {cores} cores shared, freed memory kept "
        f"{settings.WORKER_KEEP_FREED_MB} MB; "
        + "; ".join(
            f"{m.processes} proc: {m.seconds:.0f} s, PostgreSQL CPU {m.servers_cpu_s['PostgreSQL']:.0f} s, "
            f"machine busy {m.machine_busy:.0%}, load {m.load[0]:.1f}"
            for m in measured
        )
    )
    rows = [
        BenchRow("detect_pipeline_ceiling_mp_per_s", widest.mp_per_s, "MP/s", ">= 8 per core", conditions),
        BenchRow(
            "detect_pipeline_ceiling_mp_per_s_per_core",
            widest.mp_per_s / min(widest.processes, cores),
            "MP/s",
            ">= 8",
            f"{widest.processes} processes on {cores} cores; PostgreSQL and Redis on the same cores",
        ),
        BenchRow(
            "detect_pipeline_ceiling_mp_per_worker_cpu_s",
            SIZE * SIZE / 1e6 / widest.worker_cpu_s,
            "MP/CPU-s",
            ">= 8",
            f"megapixels per CPU second of the worker's processes ({widest.worker_cpu_s:.0f} s, "
            f"{widest.processes} processes; "
            + ", ".join(f"{m.processes} proc: {SIZE * SIZE / 1e6 / m.worker_cpu_s:.2f}" for m in measured)
            + "); the database's and Redis' CPU not counted",
        ),
    ]
    if 1 in by_processes:
        rows.append(
            BenchRow(
                "detect_pipeline_ceiling_mp_per_s_1_process",
                by_processes[1].mp_per_s,
                "MP/s",
                ">= 8",
                f"{by_processes[1].seconds:.0f} s, worker CPU {by_processes[1].worker_cpu_s:.0f} s",
            )
        )
    if 1 in by_processes and widest.processes > 1:
        rows.append(
            BenchRow(
                "detect_pipeline_ceiling_scaling",
                widest.mp_per_s / by_processes[1].mp_per_s,
                "ratio",
                f"{widest.processes} (linear)",
                f"MP/s with {widest.processes} processes / with 1",
            )
        )
    emit(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
