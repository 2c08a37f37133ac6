"""Change detection figures: F1 of the change detector on the generated change datasets, against a threshold
on the pixel difference between the dates, and its training time.

Run: ``make bench BENCH=change`` (``.venv/bin/python bench/bench_change.py``); about 15 minutes on 2 idle CPU
cores. Each change dataset (``workers/experiments/change_datasets.py``) trains with the default recipe for
its 500 steps without a time budget, over three seeds, so the F1 does not depend on how busy the machine is;
one more training per dataset under the platform's 55 s budget gives ``train_seconds_change_cpu``.
``python -m workers.experiments run --datasets 'change/*' --seeds 3 --time-budget 0`` gives the table.
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
from workers.experiments import repository  # noqa: E402
from workers.experiments.change_datasets import change_dataset_names, difference_baseline  # noqa: E402
from workers.experiments.runner import run_one  # noqa: E402
from workers.ml.config import Recipe  # noqa: E402

SEEDS = 3
BUDGET_S = 55.0


def main() -> int:
    torch.set_num_threads(2)
    rows: list[BenchRow] = []
    t_start = time.perf_counter()
    f1: dict[str, list[float]] = {}
    baseline: dict[str, float] = {}
    trainings: list[tuple[float, str]] = []
    datasets = {name: repository.load(name) for name in change_dataset_names()}
    for name, ds in datasets.items():
        baseline[name] = difference_baseline(ds)["f1"]
    # seed by seed over the datasets, so a run cut short still covers every dataset
    for seed in range(SEEDS):
        for name, ds in datasets.items():
            r = run_one(ds, Recipe(), time_budget_s=None, seed=seed)
            f1.setdefault(name, []).append(r["f1"])
            print(f"{name} seed {seed}: {r}", file=sys.stderr, flush=True)
    for name, ds in datasets.items():
        r = run_one(ds, Recipe(), time_budget_s=BUDGET_S, seed=0)
        trainings.append((r["train_s"], f"{name} ({r['labels']} outlines, {r['steps']} steps, F1 {r['f1']:.3f})"))
        print(f"{name} {BUDGET_S:.0f} s budget: {r}", file=sys.stderr, flush=True)
    load = os.getloadavg()[0]
    per = "; ".join(f"{n.split('/')[1]}={np.mean(v):.3f} ({min(v):.3f}-{max(v):.3f})" for n, v in f1.items())
    mean = float(np.mean([np.mean(v) for v in f1.values()]))
    rows.append(BenchRow("f1_change_synthetic", mean, "F1@IoU0.5", ">= 0.85",
                         f"default recipe, 500 steps without time budget, {SEEDS} seeds, mean (min-max): {per}"))
    rows.append(BenchRow("f1_change_difference_baseline", float(np.mean(list(baseline.values()))), "F1@IoU0.5",
                         "well under f1_change_synthetic (a pixel difference alone fails)",
                         "|after - before| smoothed and thresholded, both chosen for the best F1 on the training "
                         "areas: " + ", ".join(f"{n.split('/')[1]}={v:.3f}" for n, v in baseline.items())))
    slowest = max(trainings)
    rows.append(BenchRow("train_seconds_change_cpu", slowest[0], "s", "<= 60 (2-core CPU)",
                         f"slowest of {len(trainings)} trainings with the {BUDGET_S:.0f} s budget: {slowest[1]}; "
                         f"1-minute load average at the end {load:.1f}"))
    emit(rows)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
