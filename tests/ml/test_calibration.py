"""The seeds and score threshold a detector fits on its own training areas (workers.ml.calibration), with
stand-in networks whose foreground and core probabilities are fixed functions of the pixels, so each
object's score and the instances it splits into are known."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from shapely.geometry import box

from workers.ml.calibration import SCORE_THRESHOLDS, calibrate_post_processing, training_f1_by_score_threshold
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage
from workers.ml.predict import predict_areas, predict_areas_post_processed
from workers.ml.synthetic import SCENE_ORIGIN, Scene
from workers.ml.train import train_detector
from workers.ml.trained import TrainedModel

GROUND, BRIGHT, FAINT = 60, 200, 116  # foreground probability ~1.0 and sigmoid(1.2) ~0.77
OUTLINED = [box(8, 8, 22, 22), box(40, 10, 54, 24), box(12, 60, 26, 74)]
UNOUTLINED_FAINT = [box(70, 70, 84, 84), box(44, 90, 58, 104)]


class Brightness(torch.nn.Module):
    """Foreground probability sigmoid((mean - 110) / 5), no object cores: each blob is one object."""

    n_classes = 1
    box_head = False
    box_channels = 0

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
    (by_threshold,) = training_f1_by_score_threshold(_model(), [item])
    assert set(by_threshold) == set(SCORE_THRESHOLDS)
    assert by_threshold[0.0] == pytest.approx(0.75)  # 3 matches among 5 predictions
    assert by_threshold[0.8] == pytest.approx(1.0)
    recipe, report = calibrate_post_processing(_model(), [item])
    assert recipe.min_score == report["min_score"] == 0.8  # the lowest with the best F1: 0.75 keeps the faint
    assert report["seeds"] == "connected" and set(report["training_f1"]) == {"connected"}  # no fitted radius
    min_score = recipe.min_score
    calibrated = replace(_model(), recipe=replace(Recipe(), min_score=min_score))
    with rasterio.open(item.source) as src:
        assert len(predict_areas(_model(), src, item.training_areas)) == 5
        found = predict_areas(calibrated, src, item.training_areas)
    assert sorted(round(d.geometry.centroid.x, 3) for d in found) == sorted(
        round(scene.to_crs(g).centroid.x, 3) for g in OUTLINED)


def test_a_detector_whose_faint_objects_are_outlined_keeps_them(tmp_path):
    item, _ = _item(tmp_path, outlined_faint=True)
    recipe, report = calibrate_post_processing(_model(), [item])
    f1 = report["training_f1"]["connected"]
    assert recipe.min_score == 0.0 and f1["0.0"] == pytest.approx(1.0) and f1["0.8"] < 1.0


def test_training_writes_the_fitted_threshold_into_the_recipe_and_card(discs_to_learn):
    item = discs_to_learn
    cfg = DetectorConfig(classes=["disc"], tile_size=64)
    recipe = Recipe(max_steps=3, min_steps=1, predict_tile=128, overlap=16)
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
    fit = m.card["calibration"]
    assert fit["min_score"] == m.recipe.min_score == m.card["recipe"]["min_score"]
    # the fitted peak radius makes peaks a candidate; the recipe keeps the seeds chosen
    assert set(fit["training_f1"]) == {"connected", "peaks"}
    assert (m.recipe.seed_radius_px > 0) == (fit["seeds"] == "peaks")
    assert all(set(by) == {str(t) for t in SCORE_THRESHOLDS} for by in fit["training_f1"].values())
    assert fit["training_f1"][fit["seeds"]][str(m.recipe.min_score)] == max(
        f for by in fit["training_f1"].values() for f in by.values())
    off = train_detector([item], cfg, recipe=replace(recipe, fit_post_processing=False), time_budget_s=None)
    assert off.card["calibration"] is None and off.recipe.min_score == 0.0
    seg = train_detector([item], DetectorConfig(classes=["disc"], tile_size=64, detection_type="segmentation"),
                         recipe=recipe, time_budget_s=None)
    assert seg.card["calibration"] is None  # a segmentation region's score says nothing about an object


class FgAndCore(torch.nn.Module):
    """Foreground from the red band, sigmoid((red - 110) / 5); object core from the green band,
    sigmoid((green - 128) / 8)."""

    n_classes = 1
    box_head = False
    box_channels = 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float()
        fg, core = (x[:, :1] - 110.0) / 5.0, (x[:, 1:2] - 128.0) / 8.0
        return torch.cat([torch.zeros_like(fg), fg, core], 1)


def _row_of_crowns(tmp_path, outlines: list) -> LabelledImage:
    """One bright blob, three core bumps along it whose saddles stay above the seed threshold: connected
    core regions make it one object, peaks 8 px apart make three."""
    image = np.full((3, 128, 128), GROUND, np.uint8)
    image[0, 40:60, 20:92] = BRIGHT
    yy, xx = np.mgrid[0:128, 0:128].astype(np.float32)
    centres = ((32, 1.0), (56, 0.97), (80, 0.94))
    bumps = [h * np.exp(-((xx - cx) ** 2 + (yy - 50) ** 2) / (2 * 8.0**2)) for cx, h in centres]
    image[1] = np.clip(128 + 40 * np.maximum.reduce(bumps), 0, 255).astype(np.uint8)
    scene = Scene(image, [], 0.5, ["thing"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    path = scene.write(tmp_path / "row.tif")
    return LabelledImage(str(path), [scene.to_crs(box(0, 0, 128, 128))], [(scene.to_crs(g), "thing") for g in outlines])


def _core_model() -> TrainedModel:
    return TrainedModel(FgAndCore(), DetectorConfig(classes=["thing"]), Recipe(seed_radius_px=8.0), {}, "cpu")


def test_touching_crowns_choose_peak_seeds(tmp_path):
    item = _row_of_crowns(tmp_path, [box(20, 40, 44, 60), box(44, 40, 68, 60), box(68, 40, 92, 60)])
    recipe, report = calibrate_post_processing(_core_model(), [item])
    assert report["seeds"] == "peaks" and recipe.seed_radius_px == 8.0
    assert report["training_f1"]["peaks"]["0.0"] == pytest.approx(1.0)
    assert report["training_f1"]["connected"]["0.0"] == 0.0  # one merged object, IoU 1/3 with each crown


def test_one_long_building_keeps_connected_seeds(tmp_path):
    item = _row_of_crowns(tmp_path, [box(20, 40, 92, 60)])
    recipe, report = calibrate_post_processing(_core_model(), [item])
    assert report["seeds"] == "connected" and recipe.seed_radius_px == 0.0
    assert report["training_f1"]["connected"]["0.0"] == pytest.approx(1.0)
    assert report["training_f1"]["peaks"]["0.0"] == 0.0  # three pieces, IoU 1/3 each


class Counting(FgAndCore):
    calls = 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        Counting.calls += 1
        return super().forward(batch)


def test_post_processing_candidates_share_one_network_pass(tmp_path):
    item = _row_of_crowns(tmp_path, [box(20, 40, 44, 60), box(44, 40, 68, 60), box(68, 40, 92, 60)])
    model = TrainedModel(Counting(), DetectorConfig(classes=["thing"]), Recipe(), {}, "cpu")
    recipes = [Recipe(), Recipe(seed_radius_px=8.0)]
    with rasterio.open(item.source) as src:
        Counting.calls = 0
        both = predict_areas_post_processed(model, src, item.training_areas, recipes)
        once = Counting.calls
        apart = [predict_areas(replace(model, recipe=r), src, item.training_areas) for r in recipes]
    assert once > 0 and Counting.calls == 3 * once  # the two separate predictions ran it twice more
    assert [len(found) for found in both] == [1, 3]
    assert [[d.geometry.wkt for d in found] for found in both] == [[d.geometry.wkt for d in f] for f in apart]
