"""Command line: ``python -m workers.ml train|predict|score|evaluate|synth``.

GeoJSON inputs are lon/lat (RFC 7946) unless ``--image-crs`` says their coordinates are already in the
image CRS. Outlines take their class from the ``class`` property (default: the first class).

    python -m workers.ml synth --kind trees --out var/demo            # a demo image + GeoJSON files
    python -m workers.ml train --image var/demo/image.tif --training-areas var/demo/training_areas.geojson \\
        --outlines var/demo/outlines.geojson --out var/demo/model
    python -m workers.ml predict --model var/demo/model --image var/demo/image.tif \\
        --areas var/demo/accuracy_areas.geojson --out var/demo/detections.geojson
    python -m workers.ml score --model var/demo/model --image var/demo/image.tif \\
        --detections var/demo/detections.geojson --truth var/demo/truth.geojson \\
        --areas var/demo/accuracy_areas.geojson
    python -m workers.ml evaluate --model var/demo/model --image var/demo/image.tif \\
        --truth var/demo/truth.geojson --areas var/demo/accuracy_areas.geojson    # a training run's metrics
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import rasterio
from rasterio.windows import Window
from shapely.geometry import box, shape
from shapely.geometry.base import BaseGeometry

from .config import DetectorConfig, Recipe
from .datasets import LabelledImage
from .evaluation import evaluate_image, evaluation_metrics
from .model_card import load_model, save_model
from .postprocess import detections_to_geojson
from .predict import WINDOW_SIDE, predict_windows
from .raster_io import geometry_window, image_crs_to_lonlat, lonlat_to_image_crs
from .samplers import grid_windows
from .scoring import score_detections
from .train import train_detector


def _features(path: str) -> list[dict[str, Any]]:
    data = json.loads(Path(path).read_text())
    if data.get("type") == "FeatureCollection":
        return data["features"]
    if data.get("type") == "Feature":
        return [data]
    return [{"type": "Feature", "geometry": data, "properties": {}}]


def _geoms(path: str | None, crs: Any, image_crs: bool, default_class: str = "") -> list[tuple[BaseGeometry, str]]:
    if not path:
        return []
    out = []
    for f in _features(path):
        g = shape(f["geometry"]) if image_crs else lonlat_to_image_crs(f["geometry"], crs)
        out.append((g, (f.get("properties") or {}).get("class", default_class)))
    return out


def _write_fc(path: Path, geoms: list[BaseGeometry], crs: Any, props: list[dict] | None = None) -> None:
    feats = [{"type": "Feature", "geometry": image_crs_to_lonlat(g, crs).__geo_interface__,
              "properties": (props[i] if props else {})} for i, g in enumerate(geoms)]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))


def cmd_synth(a: argparse.Namespace) -> int:
    from .synthetic import labelled_scene, make_scene

    out = Path(a.out)
    scene = make_scene(a.kind, a.seed, (a.size, a.size), a.gsd)
    item, truth = labelled_scene(scene, out / "image.tif")
    _write_fc(out / "training_areas.geojson", item.training_areas, scene.crs)
    _write_fc(out / "accuracy_areas.geojson", item.accuracy_areas, scene.crs)
    _write_fc(out / "outlines.geojson", [g for g, _ in item.outlines], scene.crs,
              [{"class": c} for _, c in item.outlines])
    _write_fc(out / "truth.geojson", [g for g, _ in truth], scene.crs, [{"class": c} for _, c in truth])
    print(json.dumps({"image": str(out / "image.tif"), "classes": scene.classes,
                      "detection_type": scene.detection_type, "outlines": len(item.outlines)}))
    return 0


def cmd_train(a: argparse.Namespace) -> int:
    cfg_data = json.loads(a.config) if a.config else {}
    if a.classes:
        cfg_data["classes"] = a.classes.split(",")
    with rasterio.open(a.image) as src:
        crs = src.crs
    outlines = _geoms(a.outlines, crs, a.image_crs)
    if "classes" not in cfg_data:
        cfg_data["classes"] = sorted({c for _, c in outlines if c}) or ["object"]
    config = DetectorConfig.from_dict(cfg_data)
    outlines = [(g, c or config.classes[0]) for g, c in outlines]
    item = LabelledImage(a.image, [g for g, _ in _geoms(a.training_areas, crs, a.image_crs)], outlines)
    recipe = Recipe.from_dict(json.loads(a.recipe)) if a.recipe else None
    t0 = time.monotonic()

    def progress(step: int, total: int, loss: float) -> None:
        if step % 25 == 0 or step == total:
            print(f"step {step}/{total} loss {loss:.4f} ({time.monotonic() - t0:.0f} s)", file=sys.stderr)

    model = train_detector([item], config, recipe=recipe, progress=progress, time_budget_s=a.time_budget,
                           device=a.device, seed=a.seed)
    card = save_model(model, a.out)
    print(json.dumps({"model": str(card), **model.card["training"]}))
    return 0


def cmd_predict(a: argparse.Namespace) -> int:
    model = load_model(a.model, a.device)
    dets = []
    with rasterio.open(a.image) as src:
        if a.areas:
            windows = [geometry_window(g, src.transform) for g, _ in _geoms(a.areas, src.crs, a.image_crs)]
        else:
            windows = grid_windows(Window(0, 0, src.width, src.height), WINDOW_SIDE, 0)
            windows = [w.intersection(Window(0, 0, src.width, src.height)) for w in windows]
        t0 = time.monotonic()
        for _, found in predict_windows(model, src, windows):
            dets += found
        crs = src.crs
    Path(a.out).write_text(json.dumps(detections_to_geojson(dets, crs)))
    print(json.dumps({"detections": len(dets), "seconds": round(time.monotonic() - t0, 2), "out": a.out}))
    return 0


def cmd_score(a: argparse.Namespace) -> int:
    if a.model:
        card = json.loads((Path(a.model) / "model.json").read_text())
        classes, dtype = card["classes"], card["config"]["detection_type"]
    else:
        classes, dtype = a.classes.split(","), a.detection_type
    with rasterio.open(a.image) as src:
        crs = src.crs
    pred = [(g, c or classes[0]) for g, c in _geoms(a.detections, crs, a.image_crs)]
    truth = [(g, c or classes[0]) for g, c in _geoms(a.truth, crs, a.image_crs)]
    areas = [g for g, _ in _geoms(a.areas, crs, a.image_crs)] or [box(*src.bounds)]
    print(json.dumps(score_detections(pred, truth, areas, classes, dtype), indent=2))
    return 0


def cmd_evaluate(a: argparse.Namespace) -> int:
    """Predict and score as a training run does (``workers.ml.evaluation``): the same metrics it stores."""
    model = load_model(a.model, a.device)
    classes, dtype = list(model.config.classes), model.config.detection_type
    with rasterio.open(a.image) as src:
        truth = [(g, c or classes[0]) for g, c in _geoms(a.truth, src.crs, a.image_crs)]
        areas = [g for g, _ in _geoms(a.areas, src.crs, a.image_crs)] or [box(*src.bounds)]
        training_areas = [g for g, _ in _geoms(a.training_areas, src.crs, a.image_crs)]
        outlines = [(g, c or classes[0]) for g, c in _geoms(a.outlines, src.crs, a.image_crs)]
        evaluation = evaluate_image(model, src, classes=classes, detection_type=dtype, accuracy_areas=areas,
                                    truth=truth, training_areas=training_areas, training_outlines=outlines)
        crs = src.crs
    if a.review:
        _write_fc(Path(a.review), [g for g, _, _ in evaluation.review], crs,
                  [{"kind": kind, "class": c} for _, c, kind in evaluation.review])
    print(json.dumps(evaluation_metrics([evaluation], classes, dtype), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m workers.ml", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("synth", help="write a procedural demo scene with GeoJSON areas and outlines")
    s.add_argument("--kind", default="trees", choices=["trees", "cars", "buildings", "boats", "solar"])
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", type=int, default=1024)
    s.add_argument("--gsd", type=float, default=0.15)
    s.add_argument("--out", required=True)
    s.set_defaults(fn=cmd_synth)
    for name, fn in (("train", cmd_train), ("predict", cmd_predict), ("score", cmd_score),
                     ("evaluate", cmd_evaluate)):
        q = sub.add_parser(name)
        q.add_argument("--image", required=True, help="GeoTIFF/COG path or URL")
        q.add_argument("--image-crs", action="store_true", help="GeoJSON coordinates are in the image CRS")
        q.set_defaults(fn=fn)
        if name == "train":
            q.add_argument("--training-areas", required=True)
            q.add_argument("--outlines", required=True)
            q.add_argument("--classes", help="comma-separated class names (default: from outlines)")
            q.add_argument("--config", help='DetectorConfig as JSON, e.g. \'{"detection_type": "count"}\'')
            q.add_argument("--recipe", help="Recipe overrides as JSON")
            q.add_argument("--time-budget", type=float, default=55.0)
            q.add_argument("--seed", type=int, default=0)
            q.add_argument("--device")
            q.add_argument("--out", required=True, help="model directory")
        elif name == "predict":
            q.add_argument("--model", required=True)
            q.add_argument("--areas", help="GeoJSON areas to predict (default: the whole image)")
            q.add_argument("--device")
            q.add_argument("--out", required=True, help="detections GeoJSON (lon/lat)")
        elif name == "evaluate":
            q.add_argument("--model", required=True, help="model directory (gives classes and detection type)")
            q.add_argument("--truth", required=True, help="outlines of the objects in the accuracy areas")
            q.add_argument("--areas", help="accuracy areas GeoJSON (default: the whole image)")
            q.add_argument("--training-areas", help="training areas GeoJSON: also look for unoutlined objects")
            q.add_argument("--outlines", help="outlines drawn in the training areas (with --training-areas)")
            q.add_argument("--review", help="write the review (matches, misses, ...) here as GeoJSON (lon/lat)")
            q.add_argument("--device")
        else:
            q.add_argument("--detections", required=True)
            q.add_argument("--truth", required=True)
            q.add_argument("--areas", help="accuracy areas GeoJSON (default: the whole image)")
            q.add_argument("--model", help="model directory (gives classes and detection type)")
            q.add_argument("--classes", default="object")
            q.add_argument("--detection-type", default="count", choices=["count", "segmentation"])
    a = p.parse_args(argv)
    return a.fn(a)


if __name__ == "__main__":
    raise SystemExit(main())
