"""GPU figures (#17, #13): detection throughput of the ML core on a GPU, how busy the GPU was, training time
and F1 of the platform's GPU recipe (``config.default_recipe("cuda")``: the default with tta 8), and candidates.

Run where CUDA is: ``make bench BENCH=gpu`` (``.venv/bin/python -m bench.bench_gpu``). Without CUDA it says so
and records nothing; ``BENCH_GPU_FORCE_CPU=1`` runs it on the CPU at toy sizes, only to check the script.
Every phase stops at ``BENCH_GPU_DEADLINE_S`` (default 480 s from the start) so a short lease always ends
with rows; each row is emitted as soon as its phase ends.

1. Detection (``BENCH_GPU_SIZE``, default 20000): bench_detect's generated image of trees (a 1024 px scene
   tiled over the image, each copy turned or flipped), deflate-tiled GeoTIFF, a detector trained on the scene;
   - the bare network on batches of prediction tiles (bf16 autocast): the model's own ceiling;
   - the ML core end to end (read window -> network -> blend -> instances -> polygons) in one process over a
     strip of windows, with the time split between the network call and the rest;
   - the whole image split among worker processes that share the GPU, each streaming its windows with
     ``predict_windows``: ``detect_mp_per_s_gpu``. No database, broker or exports: this is the ML core's rate,
     the ceiling of a platform detection on that machine.
   The GPU's busy share is sampled with ``nvidia-smi`` (utilization.gpu: the share of time a kernel ran).
   - the same windows and processes with the network in one inference server (``workers.ml.inference_server``,
     the GPU worker's design), recipe tiles then 1024 px tiles: ``inference_server_*_gpu`` (bench_inference).
   The detector is trained with the GPU recipe, so detection averages the eight turned and mirrored views.
2. Training: every real dataset present (3 seeds) and the synthetic set with the GPU recipe on the GPU.
3. GPU recipe candidates on the real datasets: the GPU recipe fine-tuning the last encoder blocks
   (``train_blocks``).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window

from bench.bench_inference import compare, rows_of
from bench.detect_platform import SCENE, write_big_image
from bench.report import BenchRow, emit
from workers.experiments import repository
from workers.experiments.runner import run_one
from workers.ml import predict as predict_module
from workers.ml.config import DetectorConfig, default_recipe
from workers.ml.model_card import load_model, save_model
from workers.ml.predict import WINDOW_SIDE, predict_windows
from workers.ml.samplers import grid_windows
from workers.ml.synthetic import labelled_scene, make_scene
from workers.ml.train import train_detector

FORCE_CPU = os.environ.get("BENCH_GPU_FORCE_CPU") == "1"
# What the platform trains on a GPU (tta 8 with the default GPU_TTA), also when the check runs on the CPU
GPU_RECIPE = default_recipe("cuda")
SIZE = int(os.environ.get("BENCH_GPU_SIZE", "2048" if FORCE_CPU else "20000"))
DEADLINE = time.monotonic() + float(os.environ.get("BENCH_GPU_DEADLINE_S", "480"))
SKIP = set(filter(None, os.environ.get("BENCH_GPU_SKIP", "").split(",")))
LOG = os.environ.get("BENCH_GPU_LOG")  # a JSON-lines file for every training's result
REAL_SEEDS = 3


def log(record: dict) -> None:
    print(json.dumps(record), flush=True)
    if LOG:
        with open(LOG, "a") as fh:
            fh.write(json.dumps(record) + "\n")


def left() -> float:
    return DEADLINE - time.monotonic()


class GpuSampler:
    """``nvidia-smi`` utilisation samples every 100 ms while in a ``with`` block; ``share`` is their mean."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._proc: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        if shutil.which("nvidia-smi") and not FORCE_CPU:
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "100"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._thread = threading.Thread(target=self._read, daemon=True)
            self._thread.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip()) / 100)
            except ValueError:
                pass

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)

    @property
    def share(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def describe_share(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.0%}"


def device_name() -> str:
    if FORCE_CPU or not torch.cuda.is_available():
        return f"CPU ({os.cpu_count()} cores)"
    return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, {os.cpu_count()} CPU cores"


def bare_network(model, tile: int, batch: int) -> float:
    """MP/s of the network alone on uint8 tiles already on the device (bf16 autocast on CUDA)."""
    net, dev = model.network, torch.device(model.device)
    x = torch.randint(0, 255, (batch, 3, tile, tile), dtype=torch.uint8, device=dev)
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else torch.autocast("cpu", enabled=False)
    with torch.inference_mode(), amp:
        for _ in range(3):
            net(x)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < (5.0 if dev.type == "cuda" else 1.0):
            net(x)
            n += 1
        if dev.type == "cuda":
            torch.cuda.synchronize()
    return n * batch * tile * tile / 1e6 / (time.perf_counter() - t0)


def _worker(args: tuple[str, str, list[tuple[int, int, int, int]], str]) -> tuple[int, float]:
    """One detection process: its share of the windows, streamed as the CLI and grid cells do."""
    model_dir, image, windows, device = args
    torch.set_num_threads(1)
    model = load_model(model_dir, device=device)
    t0 = time.perf_counter()
    found = 0
    with rasterio.open(image) as src:
        for _, dets in predict_windows(model, src, [Window(*w) for w in windows]):
            found += len(dets)
    return found, time.perf_counter() - t0


def detection_phase(tmp: Path, rows: list[BenchRow]) -> None:
    device = "cpu" if FORCE_CPU else "cuda"
    scene = make_scene("trees", seed=11, size=(SCENE, SCENE), gsd=0.3)
    labelled, _ = labelled_scene(scene, tmp / "scene.tif")
    config = DetectorConfig.from_dict({"classes": scene.classes})
    t0 = time.perf_counter()
    model = train_detector([labelled], config, recipe=GPU_RECIPE, time_budget_s=40, device=device)
    log({"phase": "scene detector", "train_s": round(time.perf_counter() - t0, 1),
         "steps": model.card["training"]["steps"]})
    model_dir = tmp / "model"
    save_model(model, model_dir)
    image = tmp / "big.tif"
    t0 = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"):
        write_big_image(image, scene, SIZE)
    log({"phase": "image", "size": SIZE, "write_s": round(time.perf_counter() - t0, 1)})

    recipe = model.recipe
    bare = {(t, b): bare_network(model, t, b) for t, b in ((recipe.predict_tile, recipe.batch_tiles), (1024, 4))}
    log({"phase": "bare network", **{f"tile{t}_batch{b}": round(v, 1) for (t, b), v in bare.items()}})
    rows.append(BenchRow("detect_bare_network_mp_per_s_gpu", bare[(recipe.predict_tile, recipe.batch_tiles)], "MP/s",
                         "the ceiling", f"{device_name()}; network alone, one pass, on {recipe.batch_tiles}x3x"
                         f"{recipe.predict_tile}^2 uint8 tiles on the device, bf16 autocast; 4x1024^2: "
                         f"{bare[(1024, 4)]:.0f} MP/s; the recipe's tta {recipe.tta} runs {recipe.tta} passes "
                         f"per tile, so detection's ceiling is this / {recipe.tta}"))

    windows = grid_windows(Window(0, 0, SIZE, SIZE), WINDOW_SIDE, 0)
    # one process over a strip of windows, timing the network call apart from the rest
    spent = {"network": 0.0}
    original = predict_module.predict_array

    def timed(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent["network"] += time.perf_counter() - t

    predict_module.predict_array = timed
    strip = windows[: min(len(windows), 12)]
    torch.set_num_threads(1)
    try:
        with rasterio.open(image) as src, GpuSampler() as gpu:
            t0 = time.perf_counter()
            found = sum(len(d) for _, d in predict_windows(model, src, strip))
            one_s = time.perf_counter() - t0
    finally:
        predict_module.predict_array = original
        torch.set_num_threads(os.cpu_count() or 1)
    mp_strip = sum(w.width * w.height for w in strip) / 1e6
    log({"phase": "one process", "windows": len(strip), "mp": round(mp_strip, 1), "seconds": round(one_s, 2),
         "predict_array_s": round(spent["network"], 2), "objects": found, "gpu_busy": gpu.share})
    rows.append(BenchRow("detect_mp_per_s_gpu_one_process", mp_strip / one_s, "MP/s", "as high as possible",
                         f"{device_name()}; one process, 1 CPU thread, {len(strip)} windows of {WINDOW_SIDE} px "
                         f"read->network->polygons ({found} objects); predict_array (network + blending) "
                         f"{spent['network'] / one_s:.0%} of the time; GPU busy {describe_share(gpu.share)}"))

    # the whole image over several processes sharing the GPU
    processes = max(1, (os.cpu_count() or 2) - 2) if not FORCE_CPU else 2
    chunks = [[(int(w.col_off), int(w.row_off), int(w.width), int(w.height)) for w in windows[i::processes]]
              for i in range(processes)]
    if left() < 60:
        log({"phase": "many processes", "skipped": "deadline"})
        return
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool, GpuSampler() as gpu:
        t0 = time.perf_counter()
        results = pool.map(_worker, [(str(model_dir), str(image), c, device) for c in chunks])
        wall = time.perf_counter() - t0
    found = sum(r[0] for r in results)
    log({"phase": "many processes", "processes": processes, "seconds": round(wall, 1), "objects": found,
         "per_process_s": [round(r[1], 1) for r in results], "gpu_busy": gpu.share})
    cond = (f"{device_name()}; {SIZE}x{SIZE} RGB generated trees (deflate GeoTIFF), {len(windows)} windows of "
            f"{WINDOW_SIDE} px split over {processes} processes (1 CPU thread each) sharing the GPU, "
            f"read->network->polygons, {found} objects, no database/broker/exports, {wall:.0f} s")
    rows.append(BenchRow("detect_mp_per_s_gpu", SIZE * SIZE / 1e6 / wall, "MP/s", ">= 50 (#17)", cond))
    rows.append(BenchRow("detect_gpu_busy_share", gpu.share or 0.0, "share", "high (the GPU never waits)", cond))
    server_phase(model_dir, image, windows, processes, device, rows)


def server_phase(model_dir: Path, image: Path, windows: list, processes: int, device: str,
                 rows: list[BenchRow]) -> None:
    """The GPU worker's design (``workers.ml.inference_server``): the same windows and CPU processes as the
    phase above, the network in one server process batching every process's tiles (bf16), with the recipe's
    tiles then with 1024 px tiles (``INFERENCE_SERVER_TILE``)."""
    for tile in (None, 1024):
        if left() < 60:
            log({"phase": "inference server", "tile": tile, "skipped": "deadline"})
            return
        batch = 16 if tile is None else 4
        result = compare(model_dir, image, windows, processes, device, tile=tile, batch=batch,
                         modes=("server",), monitor=GpuSampler)["server"]
        log({"phase": "inference server", "tile": tile, **{k: v for k, v in result.items()}})
        suffix = "_gpu" if tile is None else "_gpu_tile1024"
        cond = (f"{device_name()}; {SIZE}x{SIZE} generated trees, {len(windows)} windows of {WINDOW_SIDE} px over "
                f"{processes} CPU processes (1 thread each) and one inference server (batches of {batch} tiles of "
                f"{tile or 'the recipe'} px, bf16); nvidia-smi busy {describe_share(result.get('sampled_busy'))}")
        rows += rows_of({"server": result}, cond, suffix)


def training_phase(rows: list[BenchRow]) -> None:
    device = "cpu" if FORCE_CPU else "cuda"
    names = [n for n in repository.dataset_names() if n not in SKIP and not n.startswith("project/")]
    real = [n for n in names if not n.startswith("synthetic/")]
    synthetic = [n for n in names if n.startswith("synthetic/")]
    recipes = [GPU_RECIPE]
    if not FORCE_CPU:
        recipes += [replace(recipes[0], name=f"finetune-{n}", train_blocks=n) for n in (2, 4)]
    results: dict[str, dict[str, list[dict]]] = {}
    for recipe in recipes:
        plan = [(n, s) for n in real for s in range(REAL_SEEDS)]
        if recipe.name == "default":
            plan += [(n, 0) for n in synthetic]
        for name, seed in plan:
            if left() < 20:
                log({"phase": "training", "skipped": f"{recipe.name} {name} {seed}: deadline"})
                break
            r = run_one(repository.load(name), recipe, time_budget_s=55.0, seed=seed, device=device)
            r = {"recipe": recipe.name, "seed": seed, **r}
            log({"phase": "training", **r})
            results.setdefault(recipe.name, {}).setdefault(name, []).append(r)
    for recipe_name, by_name in results.items():
        real_means = {n: float(np.mean([r["f1"] for r in rs])) for n, rs in by_name.items() if n in real}
        trains = [(r["train_s"], f"{n} seed {r['seed']} ({r['labels']} outlines, {r['steps']} steps)")
                  for n, rs in by_name.items() for r in rs]
        per = "; ".join(f"{n}={np.mean([r['f1'] for r in rs]):.3f} ({min(r['f1'] for r in rs):.3f}-"
                        f"{max(r['f1'] for r in rs):.3f})" for n, rs in by_name.items() if n in real)
        suffix = "" if recipe_name == "default" else f"_{recipe_name.replace('-', '_')}"
        if real_means:
            rows.append(BenchRow(f"f1_real_mean_gpu{suffix}", float(np.mean(list(real_means.values()))), "F1@IoU0.5",
                                 ">= 0.6", f"{device_name()}; recipe {recipe_name}, {REAL_SEEDS} seeds: {per}"))
        syn = [r["f1"] for n, rs in by_name.items() if n in synthetic for r in rs]
        if syn:
            rows.append(BenchRow(f"f1_synthetic_gpu{suffix}", float(np.mean(syn)), "F1@IoU0.5", ">= 0.95",
                                 f"{device_name()}; recipe {recipe_name}, seed 0, {len(syn)} datasets"))
        if trains:
            slowest = max(trains)
            rows.append(BenchRow(f"train_seconds_gpu{suffix}", slowest[0], "s", "<= 10 (#17)",
                                 f"{device_name()}; slowest of {len(trains)} trainings: {slowest[1]}; median "
                                 f"{np.median([t for t, _ in trains]):.1f} s"))


def main() -> int:
    if not FORCE_CPU and not torch.cuda.is_available():
        print("bench_gpu: no CUDA device here; nothing measured (BENCH_GPU_FORCE_CPU=1 checks the script)")
        return 0
    rows: list[BenchRow] = []
    tmp = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        detection_phase(tmp, rows)
        emit(rows)
        rows = []
        training_phase(rows)
        emit(rows)
        rows = []
    finally:
        if rows:
            emit(rows)
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
