"""CPU seconds of a detection cell's post-processing on realistic maps: instances, polygons, lon/lat WKB.

The ceiling bench (``bench_ceiling``) says where a cell's time goes through the whole platform; this bench
times the pure functions that dominate it on one inner 2,048 px cell (plus the window's margin) of the same
large image, in this process, with no database or worker, so a change to them is measured in seconds rather
than a 6-minute platform run:
- two detectors trained as the detection benches train theirs (``bench/detect_platform.py``: the generated
  1,024 px scene, 40 s budget): the benches' polygon detector, whose calibration picks peak seeds, and a bbox
  detector (box head and centre head, vote seeds); their outputs recorded over the scene's orientations
  (``bench/standin.py``);
- the cell's probabilities from ``predict.predict_array`` with the stand-in network, at the stride the
  post-processing reads (``predict.probability_stride``), as a worker computes them: the real network's outputs
  on those pixels;
- ``instance_labels`` (seeds, growth; vote seeds when the calibrated recipe uses them), ``labels_to_detections``
  (tracing, keep filter, simplification) and ``detectors.results.stored_geometries`` (lon/lat, WKB, areas),
  each with the detector's calibrated recipe, repeated and timed in CPU seconds (``time.process_time``; the
  best of the repetitions).

The trained models, recorded outputs and the cell's probabilities are kept in BENCH_POSTPROCESS_DIR (default a
temporary folder, removed) so before/after comparisons can reuse the same maps: set it to a folder to keep them.
BENCH_POSTPROCESS_REPEATS (default 5).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.report import BenchRow, emit

CELL = 2048
ORIGIN = 2048  # an inner cell of the large image: copies of the scene on every side
SIZE = 20000
REPEATS = int(os.environ.get("BENCH_POSTPROCESS_REPEATS", "5"))


def prepare(folder: Path, output_type: str):
    """(model, probabilities over the cell and its margin, margin) for a detector of ``output_type`` trained on
    the detection benches' scene as ``bench/detect_platform.train_on_scene`` trains (40 s budget), computed
    once per folder."""
    from bench.detect_platform import SCENE, big_image_region
    from bench.standin import RecordedNetwork, RecordedOutputs, record_outputs
    from workers.ml import predict
    from workers.ml.config import DetectorConfig
    from workers.ml.model_card import load_model, save_model
    from workers.ml.synthetic import labelled_scene, make_scene
    from workers.ml.train import train_detector

    model_dir, outputs, probs_path = folder / "model", folder / "outputs.npy", folder / "cell-probs.npy"
    scene = make_scene("trees", seed=11, size=(SCENE, SCENE), gsd=0.3)
    if not model_dir.exists():
        labelled, _ = labelled_scene(scene, folder / "scene.tif")
        config = DetectorConfig.from_dict({"classes": scene.classes, "output_type": output_type})
        model = train_detector([labelled], config, time_budget_s=40, threads=os.cpu_count() or 1)
        record_outputs(model.network, scene, outputs, predict.probability_stride(model.config, model.recipe))
        save_model(model, model_dir)
    model = load_model(model_dir, device="cpu")
    margin = int(model.recipe.overlap)
    if not probs_path.exists():
        side = CELL + 2 * margin
        image = big_image_region(scene, ORIGIN - margin, ORIGIN - margin, side, side, size=SIZE)
        net = model.network
        model.network = RecordedNetwork(RecordedOutputs(outputs, SIZE), net.n_classes, net.box_channels)
        model.network.expect_window(ORIGIN - margin, ORIGIN - margin, side, side, model.recipe)
        stride = predict.probability_stride(model.config, model.recipe)
        np.save(probs_path, predict.predict_array(model, image, stride=stride))
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
    from workers.ml.postprocess import instance_labels, labels_to_detections, recipe_at_stride
    from workers.ml.predict import probability_stride

    n = model.network.n_classes + 2
    stride = probability_stride(model.config, recipe)  # the maps' (``prepare``)
    if recipe.postprocess_stride != stride:
        raise RuntimeError("the bench's detectors are post-processed at their maps' stride")
    recipe = recipe_at_stride(recipe, stride)
    sizes = probs[n : n + (4 if recipe.centre_head else 2)] if probs.shape[0] > n and recipe.regress_boxes else None
    boxes = probs[n:] if probs.shape[0] >= n + 4 else None
    core = probs[:n]
    keep = box(margin / stride, margin / stride, (margin + CELL) / stride, (margin + CELL) / stride)
    transform = Affine(0.3, 0, 500000.0, 0, -0.3, 5200000.0) @ Affine.scale(stride)
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
    root = Path(keep) if keep else Path(tempfile.mkdtemp(prefix="bench-postprocess-"))
    mp = CELL * CELL / 1e6
    rows = []
    try:
        for output_type in ("polygon", "bbox"):
            (root / output_type).mkdir(parents=True, exist_ok=True)
            model, probs, margin = prepare(root / output_type, output_type)
            r = model.recipe
            m = measure(model, probs, margin, r)
            total = m["instances"] + m["polygons"] + m["lonlat_wkb"]
            seeds = "votes" if r.vote_seeds and r.regress_boxes and r.seed_radius_px >= 1 else "peaks"
            print(
                f"{output_type} detector (seeds: {seeds}, seed_radius_px={r.seed_radius_px:.1f}, stride "
                f"{r.postprocess_stride}): {m['labels']} "
                f"instances, {m['objects']} objects; instances {m['instances']:.3f} s, polygons {m['polygons']:.3f} s, "
                f"lon/lat WKB {m['lonlat_wkb']:.3f} s CPU",
                flush=True,
            )
            conditions = (
                f"one inner {CELL}² cell of the ceiling bench's image ({probs.shape[1]}² with margin), {output_type} "
                f"detector, {seeds} seeds, post-processing at stride {r.postprocess_stride}, {m['objects']} objects, "
                f"best of {REPEATS}, 1 process"
            )
            name = f"postprocess_{output_type}"
            rows += [
                BenchRow(f"{name}_instances_cpu_s", m["instances"], "CPU s", "", conditions),
                BenchRow(f"{name}_polygons_cpu_s", m["polygons"], "CPU s", "", conditions),
                BenchRow(f"{name}_lonlat_wkb_cpu_s", m["lonlat_wkb"], "CPU s", "", conditions),
                BenchRow(f"{name}_mp_per_cpu_s", mp / total, "MP/CPU-s", ">= 8 (whole CPU side)", conditions),
            ]
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
    emit(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
