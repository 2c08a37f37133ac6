"""The score threshold a detector fits on its own training areas (workers.ml.calibration), with a stand-in
network whose foreground probability is a fixed function of brightness, so each object's score is known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from shapely.geometry import box

from workers.ml.calibration import SCORE_THRESHOLDS, fit_min_score, training_f1_by_score_threshold
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage
from workers.ml.predict import predict_areas
from workers.ml.synthetic import SCENE_ORIGIN, Scene, tiny_scene
from workers.ml.train import train_detector
from workers.ml.trained import TrainedModel

GROUND, BRIGHT, FAINT = 60, 200, 116  # foreground probability ~1.0 and sigmoid(1.2) ~0.77
OUTLINED = [box(8, 8, 22, 22), box(40, 10, 54, 24), box(12, 60, 26, 74)]
UNOUTLINED_FAINT = [box(70, 70, 84, 84), box(44, 90, 58, 104)]


class Brightness(torch.nn.Module):
    """Foreground probability sigmoid((mean - 110) / 5), no object cores: each blob is one object."""

    n_classes = 1

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        fg = (batch.float().mean(1, keepdim=True) - 110.0) / 5.0
        return torch.cat([torch.zeros_like(fg), fg, torch.full_like(fg, -10.0)], 1)


def _item(tmp_path, outlined_faint: bool = False) -> tuple[LabelledImage, Scene]:
    image = np.full((3, 128, 128), GROUND, np.uint8)
    for g, value in [(g, BRIGHT) for g in OUTLINED] + [(g, FAINT) for g in UNOUTLINED_FAINT]:
        x0, y0, x1, y1 = (int(v) for v in g.bounds)
        image[:, y0:y1, x0:x1] = value
    scene = Scene(image, [], 0.5, ["thing"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    path = scene.write(tmp_path / "scene.tif")
    outlined = OUTLINED + (UNOUTLINED_FAINT if outlined_faint else [])
    item = LabelledImage(str(path), [scene.to_crs(box(0, 0, 128, 128))],
                         [(scene.to_crs(g), "thing") for g in outlined])
    return item, scene


def _model() -> TrainedModel:
    return TrainedModel(Brightness(), DetectorConfig(classes=["thing"]), Recipe(), {}, "cpu")


def test_faint_unoutlined_finds_set_the_threshold_and_are_then_dropped(tmp_path):
    item, scene = _item(tmp_path)
    by_threshold = training_f1_by_score_threshold(_model(), [item])
    assert set(by_threshold) == set(SCORE_THRESHOLDS)
    assert by_threshold[0.0] == pytest.approx(0.75)  # 3 matches among 5 predictions
    assert by_threshold[0.8] == pytest.approx(1.0)
    min_score, _ = fit_min_score(_model(), [item])
    assert min_score == 0.8  # the lowest threshold with the best F1: 0.75 still keeps the faint blobs
    calibrated = replace(_model(), recipe=replace(Recipe(), min_score=min_score))
    with rasterio.open(item.source) as src:
        assert len(predict_areas(_model(), src, item.training_areas)) == 5
        found = predict_areas(calibrated, src, item.training_areas)
    assert sorted(round(d.geometry.centroid.x, 3) for d in found) == sorted(
        round(scene.to_crs(g).centroid.x, 3) for g in OUTLINED)


def test_a_detector_whose_faint_objects_are_outlined_keeps_them(tmp_path):
    item, _ = _item(tmp_path, outlined_faint=True)
    min_score, by_threshold = fit_min_score(_model(), [item])
    assert min_score == 0.0 and by_threshold[0.0] == pytest.approx(1.0) and by_threshold[0.8] < 1.0


def test_training_writes_the_fitted_threshold_into_the_recipe_and_card(tmp_path):
    scene = tiny_scene(seed=1, size=128, n=8, radius=8)
    path = scene.write(tmp_path / "s.tif")
    item = LabelledImage(str(path), [scene.to_crs(box(0, 0, 128, 128))],
                         [(scene.to_crs(g), c) for g, c in scene.objects])
    cfg = DetectorConfig(classes=["disc"], tile_size=64)
    recipe = Recipe(max_steps=3, min_steps=1, predict_tile=128, overlap=16)
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
    fit = m.card["score_threshold"]
    assert fit["min_score"] == m.recipe.min_score == m.card["recipe"]["min_score"]
    assert set(fit["training_f1"]) == {str(t) for t in SCORE_THRESHOLDS}
    assert fit["training_f1"][str(m.recipe.min_score)] == max(fit["training_f1"].values())
    off = train_detector([item], cfg, recipe=replace(recipe, fit_min_score=False), time_budget_s=None)
    assert off.card["score_threshold"] is None and off.recipe.min_score == 0.0
    seg = train_detector([item], DetectorConfig(classes=["disc"], tile_size=64, detection_type="segmentation"),
                         recipe=recipe, time_budget_s=None)
    assert seg.card["score_threshold"] is None  # a segmentation region's score says nothing about an object
