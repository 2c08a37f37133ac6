"""The GPU worker's design (#17 item 3) against today's: windows predicted by the model in each CPU process
("in-process") or by one inference server that batches the tiles of all processes ("server"), same image,
same processes, same windows.

``python -m bench.bench_inference`` (``make bench BENCH=inference``) runs it on the CPU: bench_detect's scene
detector (trained 40 s), a ``BENCH_INFERENCE_SIZE`` (default 3072) square of the tiled scene in windows of
``BENCH_INFERENCE_WINDOW`` (default 1024) px, ``BENCH_INFERENCE_PROCESSES`` (default 2) CPU processes with one
PyTorch thread each, and for the server mode one more process with ``BENCH_INFERENCE_SERVER_THREADS``
(default 1). ``bench/bench_gpu.py`` calls ``compare`` on CUDA with as many CPU processes as the machine allows.

Each mode reports megapixels and tiles per second (wall, from the first process's start to the last's end), the
CPU seconds of every process involved, and how busy the device was: for the server its own time inside
batches over the wall time (on CUDA also ``nvidia-smi``'s utilisation, sampled by the caller); in-process, the
share of each process's time inside ``predict_array`` (network and blending), a per-process figure.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from bench.detect_platform import train_on_scene, write_big_image
from bench.report import BenchRow, emit
from workers.ml import predict as predict_module
from workers.ml.inference_server import InferenceClient, ServerSupervisor, ServerTiles
from workers.ml.model_card import load_model
from workers.ml.samplers import grid_windows

SIZE = int(os.environ.get("BENCH_INFERENCE_SIZE", "3072"))
WINDOW = int(os.environ.get("BENCH_INFERENCE_WINDOW", "1024"))
PROCESSES = int(os.environ.get("BENCH_INFERENCE_PROCESSES", "2"))
SERVER_THREADS = int(os.environ.get("BENCH_INFERENCE_SERVER_THREADS", "1"))
BATCH = int(os.environ.get("BENCH_INFERENCE_BATCH", "0")) or None  # tiles per server batch (None: 1 on a CPU)


def _client(args: tuple) -> dict[str, Any]:
    """One CPU process: its share of the windows, streamed with read-ahead, through the server or not."""
    model_dir, image, windows, device, address = args
    torch.set_num_threads(1)
    model = load_model(model_dir, device="cpu" if address else device)
    client = InferenceClient(address, timeout_s=600) if address else None
    tiles = ServerTiles(client, "bench") if client else None
    spent = {"predict_array": 0.0, "tiles": 0}
    original = predict_module.predict_array

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent["predict_array"] += time.perf_counter() - t

    predict_module.predict_array = timed
    cpu0, t0 = time.process_time(), time.perf_counter()
    found = 0
    with rasterio.open(image) as src:
        for _, dets in predict_module.predict_windows(model, src, [Window(*w) for w in windows], tiles):
            found += len(dets)
    wall = time.perf_counter() - t0
    if client:
        client.close()
    return {"objects": found, "wall_s": wall, "cpu_s": time.process_time() - cpu0,
            "predict_array_s": spent["predict_array"], "end": time.time(), "start": time.time() - wall}


def window_tiles(model_dir: Path, windows: list[Window], device_type: str, tile: int | None) -> int:
    """How many tiles the windows are cut into (each read with its context margin)."""
    model = load_model(model_dir, device="cpu")
    m = int(model.recipe.overlap)
    cuda = device_type == "cuda"
    side = tile or model.recipe.predict_tile
    limit = None if cuda or side <= predict_module.CPU_MAX_TILE else predict_module.CPU_MAX_TILE
    side = side if limit is None else limit
    total = 0
    for w in windows:
        _, rows = predict_module._axis_tiles(int(w.height) + 2 * m, side, model.recipe.overlap, limit)
        _, cols = predict_module._axis_tiles(int(w.width) + 2 * m, side, model.recipe.overlap, limit)
        total += len(rows) * len(cols)
    return total


def compare(model_dir: Path, image: Path, windows: list[Window], processes: int, device: str,
            server_threads: int = 1, tile: int | None = None, batch: int | None = None,
            wait_s: float = 0.02, modes: tuple[str, ...] = ("in-process", "server"),
            monitor: Callable[[], Any] | None = None) -> dict[str, dict[str, Any]]:
    """Both modes over the same windows split among ``processes``; per mode: mp_per_s, tiles_per_s, wall_s,
    cpu_s (all processes), objects, device_busy (server: its batches' time / wall; in-process: the mean share
    of a process's time in ``predict_array``), batches (server); with ``monitor`` (a context manager factory
    with a ``share`` once closed, e.g. bench_gpu's ``nvidia-smi`` sampler) also ``sampled_busy``."""
    chunks = [[(int(w.col_off), int(w.row_off), int(w.width), int(w.height)) for w in windows[i::processes]]
              for i in range(processes)]
    mp_total = sum(int(w.width) * int(w.height) for w in windows) / 1e6
    ctx = mp.get_context("spawn")
    out: dict[str, dict[str, Any]] = {}
    for mode in modes:
        supervisor, address = None, None
        if mode == "server":
            address = str(Path(tempfile.mkdtemp(prefix="bench-inference-sock-")) / "inference.sock")
            supervisor = ServerSupervisor(address, device, max_batch=batch, max_wait_s=wait_s, tile=tile,
                                          threads=server_threads)
            supervisor.start()
            baseline = InferenceClient(address)
            server_cpu0 = baseline.stats()["cpu_s"]  # the server's start (imports) is not counted
            baseline.close()
        try:
            sampler = monitor() if monitor is not None else contextlib.nullcontext()
            with ctx.Pool(processes) as pool, sampler:
                results = pool.map(_client, [(str(model_dir), str(image), c, device, address) for c in chunks])
            wall = max(r["end"] for r in results) - min(r["start"] for r in results)
            row: dict[str, Any] = {"wall_s": wall, "objects": sum(r["objects"] for r in results),
                                   "cpu_s": sum(r["cpu_s"] for r in results)}
            if supervisor is not None:
                stats_client = InferenceClient(address)
                stats = stats_client.stats()
                stats_client.close()
                server_cpu = stats["cpu_s"] - server_cpu0
                row.update(tiles=stats["tiles"], device_busy=stats["busy_s"] / wall, server_cpu_s=server_cpu,
                           batches=len(stats["batches"]),
                           mean_batch=stats["tiles"] / max(1, len(stats["batches"])),
                           batches_of_several=sum(1 for _, n in stats["batches"] if n > 1))
                row["cpu_s"] += server_cpu
            else:
                dev_type = torch.device(device).type
                row.update(tiles=window_tiles(model_dir, windows, dev_type, None),
                           device_busy=float(np.mean([r["predict_array_s"] / r["wall_s"] for r in results])))
            if monitor is not None:
                row["sampled_busy"] = sampler.share
            row.update(mp_per_s=mp_total / wall, tiles_per_s=row["tiles"] / wall, mp_per_cpu_s=mp_total / row["cpu_s"])
            out[mode] = row
        finally:
            if supervisor is not None:
                supervisor.stop()
                shutil.rmtree(Path(address).parent, ignore_errors=True)
    return out


def rows_of(result: dict[str, dict[str, Any]], conditions: str, suffix: str = "") -> list[BenchRow]:
    rows = []
    for mode, r in result.items():
        key = "server" if mode == "server" else "in_process"
        detail = f"{conditions}; {r['objects']} objects, {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} CPU-s"
        if mode == "server":
            detail += (f", {r['batches']} batches (mean {r['mean_batch']:.1f} tiles, {r['batches_of_several']} "
                       f"with tiles of several windows), server CPU {r['server_cpu_s']:.1f} s")
        rows.append(BenchRow(f"inference_{key}_mp_per_s{suffix}", r["mp_per_s"], "MP/s", "server >= in-process",
                             detail))
        rows.append(BenchRow(f"inference_{key}_tiles_per_s{suffix}", r["tiles_per_s"], "tiles/s", "", detail))
        rows.append(BenchRow(f"inference_{key}_mp_per_cpu_s{suffix}", r["mp_per_cpu_s"], "MP/CPU-s", "", detail))
        busy = ("server's time in batches / wall" if mode == "server"
                else "mean share of a process's time in predict_array")
        rows.append(BenchRow(f"inference_{key}_device_busy{suffix}", r["device_busy"], "share", "high",
                             f"{busy}; {detail}"))
    return rows


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="bench-inference-"))
    try:
        return run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> int:
    _, model_dir, scene = train_on_scene(tmp)
    image = tmp / "big.tif"
    write_big_image(image, scene, SIZE)
    windows = grid_windows(Window(0, 0, SIZE, SIZE), WINDOW, 0)
    load = os.getloadavg()
    result = compare(model_dir, image, windows, PROCESSES, "cpu", server_threads=SERVER_THREADS, batch=BATCH)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    for mode, r in result.items():
        print(mode, {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()}, flush=True)
    cond = (f"CPU ({os.cpu_count()} cores), {SIZE}^2 generated trees in {len(windows)} windows of {WINDOW} px, "
            f"{PROCESSES} processes x 1 thread (+ server {SERVER_THREADS} thread(s), batches of {BATCH or 1}); "
            f"load before {load[0]:.1f}, after {os.getloadavg()[0]:.1f}; "
            f"children CPU {usage.ru_utime + usage.ru_stime:.0f} s")
    emit(rows_of(result, cond))
    return 0


if __name__ == "__main__":
    sys.exit(main())
