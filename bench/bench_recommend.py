"""Where to label next, measured: a simulated user adds the top suggested area each round, against a user who
adds a randomly placed area of the same size (``workers/experiments/recommendation.py``).

Run: ``make bench BENCH=recommend`` (``.venv/bin/python bench/bench_recommend.py``). Each dataset and seed
trains 7 times (the shared start, then 3 rounds per strategy) for a fixed number of steps without a time
budget, so the figure does not depend on the load: about 4 minutes per dataset and seed on 2 idle CPU cores,
so the full table (synthetic and real single-image datasets x 3 seeds) takes hours. ``RECOMMEND_DATASETS``
(a pattern, as ``--datasets`` takes) and ``RECOMMEND_SEEDS`` run a part of it; the conditions say what ran.
``python -m workers.experiments recommend --datasets 'synthetic/*' --seeds 3`` gives the table.

``recommend_seconds_cpu``: what computing the suggestions adds to a training, on a generated 8192 x 8192 px image
with one 256-px training area (an untrained network: the same work as a trained one); the caps on squares and
pixels read make it the same for any larger image. ``RECOMMEND_COST_ONLY=1`` measures only this (a minute or two).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import rasterio  # noqa: E402
import torch  # noqa: E402
from affine import Affine  # noqa: E402
from shapely.geometry import box  # noqa: E402

from bench.report import BenchRow, emit  # noqa: E402
from workers.experiments.recommendation import recommendation_gain, run_recommendation  # noqa: E402
from workers.ml.config import DetectorConfig, Recipe  # noqa: E402
from workers.ml.recommend import suggest_areas  # noqa: E402
from workers.ml.train import build_network  # noqa: E402
from workers.ml.trained import TrainedModel  # noqa: E402

ROUNDS, SIDE, STEPS = 3, 128, 100


def suggestion_cost(size: int = 8192) -> BenchRow:
    """Seconds of ``suggest_areas`` on a generated ``size`` px image (noise: every square is read and predicted)."""
    config, recipe = DetectorConfig(classes=["thing"]), Recipe()
    model = TrainedModel(build_network(config, recipe).eval(), config, recipe, {}, "cpu")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noise.tif"
        profile = {"driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "tiled": True,
                   "blockxsize": 512, "blockysize": 512, "crs": "EPSG:32633",
                   "transform": Affine(0.5, 0, 0, 0, -0.5, size * 0.5)}
        with rasterio.open(path, "w", **profile) as dst:
            for row in range(0, size, 1024):
                rows = min(1024, size - row)
                dst.write(rng.integers(0, 255, (3, rows, size), dtype=np.uint8),
                          window=rasterio.windows.Window(0, row, size, rows))
        with rasterio.open(path) as src:
            t = src.transform
            area = box(t.c, t.f - 256 * t.a, t.c + 256 * t.a, t.f)
            started = time.perf_counter()
            found = suggest_areas(model, src, training_areas=[area])
            seconds = time.perf_counter() - started
    return BenchRow("recommend_seconds_cpu", seconds, "s", "<= 30 (2 idle CPU cores; it adds to each training)",
                    f"suggest_areas on a {size} x {size} px image, one 256-px training area, {len(found)} suggestions; "
                    f"1-minute load average at the end {os.getloadavg()[0]:.1f}")


def main() -> int:
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    cost = suggestion_cost()
    if os.environ.get("RECOMMEND_COST_ONLY"):
        emit([cost])
        return 0
    pattern = os.environ.get("RECOMMEND_DATASETS") or None
    seeds = int(os.environ.get("RECOMMEND_SEEDS", "3"))
    results = run_recommendation(pattern, seeds=seeds, rounds=ROUNDS, side=SIDE, max_steps=STEPS)
    per: dict[str, list[float]] = {}
    for r in results:
        per.setdefault(r["dataset"], []).append(r["suggested"][-1] - r["random"][-1])
    detail = "; ".join(f"{n}={np.mean(v):+.3f} ({len(v)} seeds)" for n, v in per.items())
    emit([cost, BenchRow("recommendation_gain", recommendation_gain(results), "F1@IoU0.5", "> 0 (clearly)",
                   f"F1 on the accuracy areas after {ROUNDS} rounds of one {SIDE}-px area each, top suggestion minus "
                   f"random, {STEPS} steps per training without time budget, mean over datasets x seeds: {detail}")])
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
