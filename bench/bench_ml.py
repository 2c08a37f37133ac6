"""ML core figures: training time, F1 on synthetic and NEON data, prediction throughput vs the bare model.

Run: ``.venv/bin/python bench/bench_ml.py`` (or through ``bench/run.py``); about 7-8 minutes on 2 CPU cores.
The first dataset trains with the default configuration and time budget (its wall time is
``train_seconds_cpu``); the other datasets train with a shorter budget to keep the script under ~8 minutes,
stated in each row's conditions. ``python -m workers.experiments run`` gives the full table.
"""

from __future__ import annotations

import dataclasses
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
from rasterio.windows import Window  # noqa: E402

from bench.report import BenchRow, emit  # noqa: E402
from workers.experiments import repository  # noqa: E402
from workers.experiments.runner import run_one  # noqa: E402
from workers.ml.config import DetectorConfig, Recipe  # noqa: E402
from workers.ml.predict import CPU_MAX_TILE, WINDOW_SIDE, predict_windows  # noqa: E402
from workers.ml.samplers import grid_windows  # noqa: E402
from workers.ml.synthetic import make_scene  # noqa: E402
from workers.ml.train import train_detector  # noqa: E402

SHORT_BUDGET = 35.0


def throughput(rows: list[BenchRow]) -> None:
    ds = repository.load("synthetic/trees-a")
    config = DetectorConfig(classes=ds.classes)
    recipe = Recipe()
    model = train_detector([ds.item], config, recipe=recipe, time_budget_s=10)
    net, tile = model.network, recipe.predict_tile
    if not model.device.startswith("cuda"):
        tile = min(tile, CPU_MAX_TILE)  # the tile side prediction really uses on CPU: the bare model gets the same
    bs = recipe.batch_tiles if model.device.startswith("cuda") else 1  # what predict_array uses
    with tempfile.TemporaryDirectory() as tmp:
        # 4096 px square: four copies of a 2048 px scene (generating one this large takes minutes)
        scene = make_scene("trees", 99, (2048, 2048), 0.15)
        scene = dataclasses.replace(scene, image=np.tile(scene.image, (1, 2, 2)))
        path = scene.write(Path(tmp) / "big.tif")
        # bare model: forward passes on random tensors of the prediction tile size, measured before and
        # after the end-to-end run and averaged, so load changes on a shared machine affect both alike
        x = torch.randint(0, 255, (bs, 3, tile, tile), dtype=torch.uint8)

        def bare_mp_per_s() -> float:
            with torch.no_grad():
                net(x)
                t0 = time.perf_counter()
                n = 8 // bs or 1
                for _ in range(n):
                    net(x)
                return n * bs * tile * tile / 1e6 / (time.perf_counter() - t0)

        bare_before = bare_mp_per_s()
        with rasterio.open(path) as src:
            windows = grid_windows(Window(0, 0, src.width, src.height), WINDOW_SIDE, 0)
            t0 = time.perf_counter()
            found = sum(len(d) for _, d in predict_windows(model, src, windows))
            e2e = src.width * src.height / 1e6 / (time.perf_counter() - t0)
        bare = (bare_before + bare_mp_per_s()) / 2
    cond = (
        f"4096x4096 RGB GeoTIFF, {len(windows)} windows of {WINDOW_SIDE} (as the CLI streams an image), "
        f"read->model->polygons ({found} objects), tile {tile}, "
        f"overlap {recipe.overlap}, batch {bs}, {torch.get_num_threads()} CPU threads; bare model "
        f"{bare:.3g} MP/s on random {bs}x3x{tile}x{tile}"
    )
    rows.append(BenchRow("predict_mp_per_s", e2e, "MP/s", "as high as possible (GPU: 10-100x CPU)", cond))
    rows.append(BenchRow("predict_vs_bare_model", e2e / bare, "ratio", ">= 0.8", cond))


def main() -> int:
    torch.set_num_threads(2)
    rows: list[BenchRow] = []
    t_start = time.perf_counter()
    syn = [n for n in repository.dataset_names() if n.startswith("synthetic/")]
    first = "synthetic/trees-a"
    f1s = []
    r = run_one(repository.load(first), Recipe(), time_budget_s=55.0)
    f1s.append(r["f1"])
    rows.append(
        BenchRow(
            "train_seconds_cpu",
            r["train_s"],
            "s",
            "<= 60 (2-core CPU)",
            f"{first}: {r['labels']} outlines, default config+recipe, {r['steps']} steps, "
            f"stop={r['stop']}, budget 55 s",
        )
    )
    per = [f"{first.split('/')[1]}={r['f1']}"]
    for name in syn:
        if name == first:
            continue
        r = run_one(repository.load(name), Recipe(), time_budget_s=SHORT_BUDGET)
        f1s.append(r["f1"])
        per.append(f"{name.split('/')[1]}={r['f1']}")
    rows.append(
        BenchRow(
            "f1_synthetic",
            float(np.mean(f1s)),
            "F1@IoU0.5",
            ">= 0.85",
            f"mean over {len(f1s)} synthetic datasets (<=100 outlines each; first at 55 s budget, "
            f"others {SHORT_BUDGET:.0f} s): " + ", ".join(per),
        )
    )
    r = run_one(repository.load("neon/yell"), Recipe(), time_budget_s=SHORT_BUDGET)
    rows.append(
        BenchRow(
            "f1_neon",
            r["f1"],
            "F1@IoU0.5",
            ">= 0.6 (aim)",
            f"neon/yell: {r['labels']} human boxes for training, scored on the rest of the image "
            f"(bbox output vs boxes), P={r['precision']} R={r['recall']} F1@0.4={r['f1_iou40']}, "
            f"budget {SHORT_BUDGET:.0f} s",
        )
    )
    throughput(rows)
    emit(rows)
    print(f"total {time.perf_counter() - t_start:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
