"""Evaluating a model as a training run does (workers.ml.evaluation), with a stand-in network.

The network here is a fixed function of brightness (no training): the prediction, vectorisation, scoring
and review it goes through are the real ones, and what it finds is known exactly.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from shapely.geometry import Polygon, box, mapping

from workers.ml.__main__ import main
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.evaluation import (
    NO_ACCURACY_AREA_NOTE,
    ImageEvaluation,
    evaluate_image,
    evaluation_metrics,
    unoutlined_check_model,
)
from workers.ml.raster_io import image_crs_to_lonlat
from workers.ml.scoring import score_detections
from workers.ml.synthetic import SCENE_ORIGIN, Scene
from workers.ml.trained import TrainedModel

GROUND, BRIGHT, DIM = 60, 200, 108  # DIM: foreground probability ~0.4, between the two thresholds


class Brightness(torch.nn.Module):
    """Foreground where the image is bright: probability sigmoid((mean - 110) / 5); no object cores, so
    each bright blob is one object."""

    n_classes = 1
    box_head = False
    box_channels = 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        fg = (batch.float().mean(1, keepdim=True) - 110.0) / 5.0
        return torch.cat([torch.zeros_like(fg), fg, torch.full_like(fg, -10.0)], 1)


def brightness_model() -> TrainedModel:
    return TrainedModel(Brightness(), DetectorConfig(classes=["thing"]), Recipe(), {}, "cpu")


# Pixel geometries. The accuracy area is the upper-right triangle of the top-right quadrant: its window
# (the whole quadrant) also holds an object outside the triangle, which must not be predicted there.
ACCURACY_PX = Polygon([(64, 0), (128, 0), (128, 64)])
TRAINING_PX = box(0, 64, 64, 128)
MATCH_PX = box(100, 6, 112, 18)  # painted and outlined
FALSE_PX = box(110, 26, 122, 38)  # painted, not outlined
MISS_PX = box(80, 2, 92, 14)  # outlined, not painted
DIM_MISS_PX = box(114, 44, 126, 56)  # outlined, painted dim: too faint for the accuracy areas' threshold
BESIDE_PX = box(68, 44, 80, 56)  # painted and outlined, in the area's window but outside the area
OUTLINED_PX = box(8, 72, 20, 84)  # training area: painted and outlined
FORGOTTEN_PX = box(30, 90, 42, 102)  # training area: painted, never outlined
FAINT_FORGOTTEN_PX = box(8, 108, 20, 120)  # training area: painted dim, never outlined


def _scene() -> Scene:
    image = np.full((3, 128, 128), GROUND, np.uint8)
    for g, value in ((MATCH_PX, BRIGHT), (FALSE_PX, BRIGHT), (DIM_MISS_PX, DIM), (BESIDE_PX, BRIGHT),
                     (OUTLINED_PX, BRIGHT), (FORGOTTEN_PX, BRIGHT), (FAINT_FORGOTTEN_PX, DIM)):
        x0, y0, x1, y1 = (int(v) for v in g.bounds)
        image[:, y0:y1, x0:x1] = value
    scene = Scene(image, [], 0.5, ["thing"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    return scene


@pytest.fixture
def scene_tif(tmp_path):
    scene = _scene()
    return scene.write(tmp_path / "scene.tif"), scene


def _evaluate(path, scene, **areas) -> ImageEvaluation:
    truth = [(scene.to_crs(g), "thing") for g in (MATCH_PX, MISS_PX, DIM_MISS_PX, BESIDE_PX)]
    with rasterio.open(path) as src:
        return evaluate_image(brightness_model(), src, classes=["thing"], detection_type="count",
                              accuracy_areas=[scene.to_crs(ACCURACY_PX)], truth=truth, **areas)


def test_only_objects_touching_the_accuracy_areas_are_predicted_scored_and_reviewed(scene_tif):
    path, scene = scene_tif
    evaluation = _evaluate(path, scene)
    area = scene.to_crs(ACCURACY_PX)
    found = sorted(d.geometry.centroid.x for d in evaluation.accuracy)
    assert found == pytest.approx(sorted(scene.to_crs(g).centroid.x for g in (MATCH_PX, FALSE_PX)))
    assert all(d.geometry.intersects(area) for d in evaluation.accuracy)
    assert len(evaluation.truth) == 3  # the outline beside the area is not scored against
    kinds = sorted(kind for _, _, kind in evaluation.review)
    assert kinds == ["false_detection", "match", "miss", "miss"]
    assert evaluation.unoutlined == 0 and evaluation.testing == []

    metrics = evaluation_metrics([evaluation], ["thing"], "count")
    overall = metrics["overall"]
    assert (overall["n_pred"], overall["n_true"], overall["matches"]) == (2, 3, 1)
    assert overall["precision"] == 0.5 and overall["recall"] == pytest.approx(1 / 3)
    assert metrics["score"] == 40.0 and metrics["unoutlined"] == 0


def test_training_areas_are_checked_for_unoutlined_objects_with_a_lower_threshold(scene_tif):
    path, scene = scene_tif
    evaluation = _evaluate(path, scene, training_areas=[scene.to_crs(TRAINING_PX)],
                           training_outlines=[(scene.to_crs(OUTLINED_PX), "thing")],
                           testing_areas=[scene.to_crs(box(0, 0, 64, 64))])
    flagged = sorted(g.centroid.y for g, _, kind in evaluation.review if kind == "unoutlined")
    # the faint one too: the accuracy areas' threshold (0.5) misses the same brightness (DIM_MISS_PX)
    assert flagged == pytest.approx(sorted(scene.to_crs(g).centroid.y for g in (FORGOTTEN_PX, FAINT_FORGOTTEN_PX)))
    assert evaluation.unoutlined == 2
    assert evaluation.testing == []  # nothing painted in the testing area
    assert evaluation_metrics([evaluation], ["thing"], "count")["unoutlined"] == 2


def test_the_check_model_caps_the_threshold_and_leaves_the_model_alone():
    model = brightness_model()
    assert unoutlined_check_model(model).recipe.fg_threshold == 0.3 and model.recipe.fg_threshold == 0.5
    assert unoutlined_check_model(model).network is model.network
    strict = TrainedModel(model.network, model.config, Recipe(fg_threshold=0.2))
    assert unoutlined_check_model(strict).recipe.fg_threshold == 0.2
    # a fitted score threshold drops faint objects, which are what this check looks for
    calibrated = TrainedModel(model.network, model.config, Recipe(min_score=0.9))
    assert unoutlined_check_model(calibrated).recipe.min_score == 0.0


def test_several_images_are_scored_together_and_without_accuracy_areas_a_note_says_how(scene_tif):
    path, scene = scene_tif
    a, b = _evaluate(path, scene), _evaluate(path, scene)
    b.unoutlined = 3
    metrics = evaluation_metrics([a, b], ["thing"], "count")
    together = score_detections([(d.geometry, d.class_name) for e in (a, b) for d in e.accuracy], a.truth + b.truth,
                                a.accuracy_areas + b.accuracy_areas, ["thing"], "count")
    assert metrics == {**together, "score": 40.0, "unoutlined": 3}
    assert evaluation_metrics([ImageEvaluation(unoutlined=2)], ["thing"], "count") == {
        "score": None, "unoutlined": 2, "note": NO_ACCURACY_AREA_NOTE}


def _fc(geoms, crs):
    return {"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": mapping(image_crs_to_lonlat(g, crs)), "properties": {"class": "thing"}}
        for g in geoms]}


def test_cli_evaluate_prints_the_metrics_a_training_run_stores(scene_tif, tmp_path, capsys, monkeypatch):
    path, scene = scene_tif
    monkeypatch.setattr("workers.ml.__main__.load_model", lambda folder, device=None: brightness_model())
    files = {
        "truth": [MATCH_PX, MISS_PX, DIM_MISS_PX, BESIDE_PX], "areas": [ACCURACY_PX], "training": [TRAINING_PX],
        "outlines": [OUTLINED_PX],
    }
    for name, geoms in files.items():
        (tmp_path / f"{name}.geojson").write_text(json.dumps(_fc([scene.to_crs(g) for g in geoms], scene.crs)))
    rc = main(["evaluate", "--model", "unused", "--image", str(path), "--truth", str(tmp_path / "truth.geojson"),
               "--areas", str(tmp_path / "areas.geojson"), "--training-areas", str(tmp_path / "training.geojson"),
               "--outlines", str(tmp_path / "outlines.geojson"), "--review", str(tmp_path / "review.geojson")])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    evaluation = _evaluate(path, scene, training_areas=[scene.to_crs(TRAINING_PX)],
                           training_outlines=[(scene.to_crs(OUTLINED_PX), "thing")])
    assert printed == json.loads(json.dumps(evaluation_metrics([evaluation], ["thing"], "count")))
    assert printed["score"] == 40.0 and printed["unoutlined"] == 2
    review = json.loads((tmp_path / "review.geojson").read_text())["features"]
    assert sorted(f["properties"]["kind"] for f in review) == [
        "false_detection", "match", "miss", "miss", "unoutlined", "unoutlined"]
