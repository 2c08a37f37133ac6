"""One real training run on an easy synthetic dataset (slow: ~30-60 s on 2 CPU cores)."""

import numpy as np
import pytest
import rasterio
from shapely.geometry import box

from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage
from workers.ml.predict import predict_window
from workers.ml.raster_io import geometry_window
from workers.ml.scoring import score_detections
from workers.ml.synthetic import tiny_scene


@pytest.mark.slow
def test_trains_on_easy_synthetic_data_and_scores_f1_above_0_8(tmp_path):
    scene = tiny_scene(seed=3, size=384, n=40, radius=10)
    path = scene.write(tmp_path / "easy.tif")
    train_px, acc_px = box(0, 0, 192, 384), box(192, 0, 384, 384)
    train, acc = scene.to_crs(train_px), scene.to_crs(acc_px)
    truth = [(scene.to_crs(g), c) for g, c in scene.objects]
    outlines = [(g, c) for g, c in truth if g.intersects(train)]
    assert 5 <= len(outlines) <= 100
    item = LabelledImage(str(path), [train], outlines, [acc])
    steps = []
    cfg = DetectorConfig(classes=["disc"], tile_size=128)
    model = train_detector_quick(item, cfg, steps)
    assert steps and steps[-1][0] == model.card["training"]["steps"]
    assert all(np.isfinite(loss) for _, _, loss in steps)
    with rasterio.open(path) as src:
        dets = predict_window(model, src, geometry_window(acc, src.transform))
    s = score_detections([(d.geometry, d.class_name) for d in dets], truth, [acc], ["disc"])["overall"]
    assert s["f1"] >= 0.8, s


def train_detector_quick(item, cfg, steps):
    from workers.ml.train import train_detector

    # a fixed step count (not a time budget) keeps the test deterministic on a busy machine
    recipe = Recipe(max_chips=16, feature_variants=1, batch_size=8, max_steps=80)
    return train_detector([item], cfg, recipe=recipe, progress=lambda *a: steps.append(a), time_budget_s=None)
