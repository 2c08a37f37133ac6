"""Where to label next, measured: a simulated user adds the top suggested area each round, against a user who
adds a randomly placed area of the same size (``workers/experiments/recommendation.py``).

Run: ``make bench BENCH=recommend`` (``.venv/bin/python bench/bench_recommend.py``). Each dataset and seed
trains 7 times (the shared start, then 3 rounds per strategy) for a fixed number of steps without a time
budget, so the figure does not depend on the load: about 4 minutes per dataset and seed on 2 idle CPU cores,
so the full table (synthetic and real single-image datasets x 3 seeds) takes hours. ``RECOMMEND_DATASETS``
(a pattern, as ``--datasets`` takes) and ``RECOMMEND_SEEDS`` run a part of it; the conditions say what ran.
``python -m workers.experiments recommend --datasets 'synthetic/*' --seeds 3`` gives the table.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.report import BenchRow, emit  # noqa: E402
from workers.experiments.recommendation import recommendation_gain, run_recommendation  # noqa: E402

ROUNDS, SIDE, STEPS = 3, 128, 100


def main() -> int:
    torch.set_num_threads(2)
    t_start = time.perf_counter()
    pattern = os.environ.get("RECOMMEND_DATASETS") or None
    seeds = int(os.environ.get("RECOMMEND_SEEDS", "3"))
    results = run_recommendation(pattern, seeds=seeds, rounds=ROUNDS, side=SIDE, max_steps=STEPS)
    per: dict[str, list[float]] = {}
    for r in results:
        per.setdefault(r["dataset"], []).append(r["suggested"][-1] - r["random"][-1])
    detail = "; ".join(f"{n}={np.mean(v):+.3f} ({len(v)} seeds)" for n, v in per.items())
    emit([BenchRow("recommendation_gain", recommendation_gain(results), "F1@IoU0.5", "> 0 (clearly)",
                   f"F1 on the accuracy areas after {ROUNDS} rounds of one {SIDE}-px area each, top suggestion minus "
                   f"random, {STEPS} steps per training without time budget, mean over datasets x seeds: {detail}")])
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
