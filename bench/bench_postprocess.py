"""CPU seconds of a detection cell's post-processing on realistic maps: instances, polygons, lon/lat WKB.

The ceiling bench (``bench_ceiling``) says where a cell's time goes through the whole platform; this bench
times the pure functions that dominate it on one inner 2,048 px cell (plus the window's margin) of the same
large image, in this process, with no database or worker, so a change to them is measured in seconds rather
than a 6-minute platform run:
- the same detector as the detection benches (``bench/detect_platform.py``: trained on the generated
  1,024 px scene, 40 s budget) and its outputs recorded over the scene's orientations (``bench/standin.py``);
- the cell's probabilities from ``predict.predict_array`` with the stand-in network (as a worker computes
  them, the real network's outputs on those pixels);
- ``instance_labels`` (seeds, growth; vote seeds when the calibrated recipe uses them), ``labels_to_detections``
  (tracing, keep filter, simplification) and ``detectors.results.stored_geometries`` (lon/lat, WKB, areas),
  each repeated and timed in CPU seconds (``time.process_time``; the best of the repetitions), with the
  recipe's seeds both ways (peaks grown by the nearest-seed transform, and vote seeds).

The trained model, recorded outputs and the cell's probabilities are kept in BENCH_POSTPROCESS_DIR (default
a temporary folder, removed) so before/after comparisons can reuse one map: set it to a folder to keep them.
BENCH_POSTPROCESS_REPEATS (default 5).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from bench.report import BenchRow, emit

CELL = 2048
ORIGIN = 2048  # an inner cell of the large image: copies of the scene on every side
SIZE = 20000
REPEATS = int(os.environ.get("BENCH_POSTPROCESS_REPEATS", "5"))


def prepare(folder: Path):
    """(model, probabilities over the cell and its margin, margin), trained and computed once per folder."""
    from bench.detect_platform import big_image_region, train_on_scene
    from bench.standin import RecordedNetwork, RecordedOutputs, record_outputs
    from workers.ml import predict
    from workers.ml.model_card import load_model

    model_dir, outputs, probs_path = folder / "model", folder / "outputs.npy", folder / "cell-probs.npy"
    if not model_dir.exists():
        model, _, scene = train_on_scene(folder)
        record_outputs(model.network, scene, outputs)
    model = load_model(model_dir, device="cpu")
    margin = int(model.recipe.overlap)
    if not probs_path.exists():
        from workers.ml.synthetic import make_scene

        scene = make_scene("trees", seed=11, size=(1024, 1024), gsd=0.3)
        side = CELL + 2 * margin
        image = big_image_region(scene, ORIGIN - margin, ORIGIN - margin, side, side, size=SIZE)
        net = model.network
        model.network = RecordedNetwork(RecordedOutputs(outputs, SIZE), net.n_classes, net.box_channels)
        model.network.expect_window(ORIGIN - margin, ORIGIN - margin, side, side, model.recipe)
        np.save(probs_path, predict.predict_array(model, image))
        model.network = net
    return model, np.load(probs_path), margin


def cpu_seconds(fn, repeats: int = REPEATS):
    """(best CPU seconds of ``repeats`` calls, the last result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.process_time()
        result = fn()
        best = min(best, time.process_time() - start)
    return best, result


def measure(model, probs: np.ndarray, margin: int, recipe) -> dict[str, float | int]:
    """CPU seconds of each post-processing step on the cell, as ``predict._decode`` and a worker call them."""
    from affine import Affine
    from shapely.geometry import box

    from detectors.results import stored_geometries
    from workers.ml.postprocess import instance_labels, labels_to_detections

    n = model.network.n_classes + 2
    sizes = probs[n : n + (4 if recipe.centre_head else 2)] if probs.shape[0] > n and recipe.regress_boxes else None
    boxes = probs[n:] if probs.shape[0] >= n + 4 else None
    core = probs[:n]
    keep = box(margin, margin, margin + CELL, margin + CELL)
    transform = Affine(0.3, 0, 500000.0, 0, -0.3, 5200000.0)
    t_inst, (labels, count) = cpu_seconds(lambda: instance_labels(core, model.config.detection_type, recipe, boxes))
    t_poly, found = cpu_seconds(
        lambda: labels_to_detections(labels, core, transform, model.config, recipe, keep=keep, box_sizes=sizes)
    )
    t_wkb, _ = cpu_seconds(lambda: stored_geometries([d.geometry for d in found], "EPSG:32632"))
    return {"instances": t_inst, "polygons": t_poly, "lonlat_wkb": t_wkb, "labels": count, "objects": len(found)}


def main() -> int:
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "picterra.settings")
    django.setup()
    keep = os.environ.get("BENCH_POSTPROCESS_DIR")
    folder = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-postprocess-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        model, probs, margin = prepare(folder)
    finally:
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
    mp = CELL * CELL / 1e6
    recipe = model.recipe
    variants = {"calibrated": recipe}
    if recipe.vote_seeds and recipe.seed_radius_px >= 1:
        variants["peaks"] = replace(recipe, vote_seeds=False)
    elif probs.shape[0] >= model.network.n_classes + 6:
        variants["votes"] = replace(recipe, vote_seeds=True, seed_radius_px=max(recipe.seed_radius_px, 4.0))
    rows = []
    shape = f"{probs.shape[1]}x{probs.shape[2]}"
    for name, r in variants.items():
        m = measure(model, probs, margin, r)
        total = m["instances"] + m["polygons"] + m["lonlat_wkb"]
        print(
            f"{name} (vote_seeds={r.vote_seeds}, seed_radius_px={r.seed_radius_px:.1f}): {m['labels']} instances, "
            f"{m['objects']} objects; instances {m['instances']:.3f} s, polygons {m['polygons']:.3f} s, "
            f"lon/lat WKB {m['lonlat_wkb']:.3f} s CPU",
            flush=True,
        )
        conditions = (
            f"one inner {CELL}² cell of the ceiling bench's image ({shape} with margin), {m['objects']} objects, "
            f"seeds: {name}, best of {REPEATS}, 1 process"
        )
        rows += [
            BenchRow(f"postprocess_{name}_instances_cpu_s", m["instances"], "CPU s", "", conditions),
            BenchRow(f"postprocess_{name}_polygons_cpu_s", m["polygons"], "CPU s", "", conditions),
            BenchRow(f"postprocess_{name}_lonlat_wkb_cpu_s", m["lonlat_wkb"], "CPU s", "", conditions),
            BenchRow(f"postprocess_{name}_mp_per_cpu_s", mp / total, "MP/CPU-s", ">= 8 (whole CPU side)", conditions),
        ]
    emit(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
