"""The simulated user of workers.experiments.recommendation, with a stand-in network for training (no training
runs): the suggested strategy adds the square the detector is least sure of, the random one squares drawn from
the same candidates, and the figures are computed from what each round scored."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from shapely.geometry import box

from tests.ml.test_recommend import DIM, GROUND, model
from workers.experiments import recommendation
from workers.experiments.repository import ExperimentDataset
from workers.ml.datasets import LabelledImage
from workers.ml.synthetic import SCENE_ORIGIN, Scene


def dataset(tmp_path) -> ExperimentDataset:
    """256 px: dim (faint) objects in the 64-px square at (128, 0), an accuracy area on the right quarter."""
    image = np.full((3, 256, 256), GROUND, np.uint8)
    objects = [box(128 + dx, dy, 140 + dx, 12 + dy) for dx in (10, 40) for dy in (10, 40)]
    objects += [box(20, 150, 32, 162)]  # one more, elsewhere, so the start square can hold an object
    for o in objects:
        x0, y0, x1, y1 = (int(v) for v in o.bounds)
        image[:, y0:y1, x0:x1] = DIM
    scene = Scene(image, [(o, "thing") for o in objects], 0.5, ["thing"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    path = scene.write(tmp_path / "scene.tif")
    truth = [(scene.to_crs(o), "thing") for o in objects]
    item = LabelledImage(str(path), [], [], [scene.to_crs(box(192, 0, 256, 256))])
    return ExperimentDataset("synthetic/test", item, truth, ["thing"])


def test_the_suggested_user_adds_the_least_sure_square_and_the_random_one_another(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(recommendation, "train_detector", lambda images, *a, **k: trained.append(images[0]) or model())
    result = recommendation.simulate(dataset(tmp_path), seed=0, rounds=2, side=64, echo=False)
    assert len(trained) == 1 + 2 * 2  # the shared start, then each round of each strategy
    start = trained[0].training_areas[0]
    assert len(trained[0].outlines) == 1  # the start square holds the one object outside the faint square
    suggested_areas = trained[2].training_areas
    assert start in suggested_areas and len(suggested_areas) == 3
    first_added = next(a for a in trained[1].training_areas if a != start)
    px = ~Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    x0, y0 = px @ (first_added.bounds[0], first_added.bounds[3])
    assert (round(x0), round(y0)) == (128, 0)  # the first round adds the square of faint candidates
    # the second round: no square left with any signal, so a random one is added, and counted
    assert result["outlines_suggested"] == 5 and result["nothing_suggested"] == 1
    assert len(result["suggested"]) == len(result["random"]) == 2
    assert all(not a.intersects(box(*trained[0].accuracy_areas[0].bounds).buffer(-1e-6))
               for a in trained[4].training_areas)  # random squares stay off the accuracy area


def test_the_gain_is_suggested_minus_random_after_the_last_round():
    rows = [
        {"dataset": "a", "f1_start": 0.5, "suggested": [0.7, 0.9], "random": [0.6, 0.7], "outlines_suggested": 9,
         "outlines_random": 7},
        {"dataset": "a", "f1_start": 0.5, "suggested": [0.7, 0.8], "random": [0.6, 0.8], "outlines_suggested": 9,
         "outlines_random": 7},
    ]
    assert recommendation.recommendation_gain(rows) == pytest.approx(0.1)
    table = recommendation.gain_table(rows)
    assert "0.1" in table.splitlines()[2] and table.splitlines()[-1].startswith("mean")
    assert "+0.100/+0.100" in table.splitlines()[2]  # the gain after each round



def test_a_training_depends_on_the_labels_drawn_not_on_the_order_they_were_drawn_in():
    squares = [box(0, 0, 10, 10), box(20, 0, 30, 10), box(0, 20, 10, 30)]
    known = [(box(25, 2, 27, 4), "b"), (box(2, 2, 4, 4), "a"), (box(50, 50, 52, 52), "far"), (box(8, 22, 12, 24), "c")]
    areas, outlines = recommendation.canonical_labels(squares, known)
    for order in ([2, 0, 1], [1, 2, 0]):
        assert recommendation.canonical_labels([squares[i] for i in order], known) == (areas, outlines)
    assert sorted(map(id, areas)) == sorted(map(id, squares))
    assert [c for _, c in outlines] == ["b", "a", "c"]  # the dataset's order; the outline of no square left out
