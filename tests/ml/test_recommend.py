"""Where to label next (workers.ml.recommend), with stand-in networks whose answers are known exactly.

The prediction, windows, reads and ranking are the real ones; only the network is a fixed function of the
pixels, so which square is least sure is known in advance.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from shapely.geometry import box

from workers.ml import predict as ml_predict
from workers.ml import recommend
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.recommend import REASONS, candidate_windows, suggest_areas, suggestion_side
from workers.ml.synthetic import SCENE_ORIGIN, Scene
from workers.ml.trained import TrainedModel

GROUND, BRIGHT, DIM = 60, 200, 108  # DIM: foreground probability ~0.4, faint (under the 0.5 threshold)
SIDE = 64  # the training area's side, so the squares proposed


class Brightness(torch.nn.Module):
    """Foreground where the image is bright: sigmoid((mean - 110) / 5); the same on a mirrored image."""

    n_classes = 1
    box_head = False
    box_channels = 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        fg = (batch.float().mean(1, keepdim=True) - 110.0) / 5.0
        return torch.cat([torch.zeros_like(fg), fg, torch.full_like(fg, -10.0)], 1)


class Shifted(Brightness):
    """Brightness seen 8 pixels to the right: mirrored, it looks 8 pixels to the left, so it disagrees with
    itself at every edge of a bright object."""

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return torch.roll(super().forward(batch), 8, dims=-1)


def model(net: torch.nn.Module | None = None) -> TrainedModel:
    return TrainedModel(net or Brightness(), DetectorConfig(classes=["thing"]), Recipe(), {}, "cpu")


def write_scene(tmp_path, painted: list[tuple[tuple[int, int, int, int], int]], size: int = 256) -> Scene:
    """A ``size`` square scene of plain ground with the pixel boxes painted (value), written as scene.tif."""
    image = np.full((3, size, size), GROUND, np.uint8)
    for (x0, y0, x1, y1), value in painted:
        image[:, y0:y1, x0:x1] = value
    scene = Scene(image, [], 0.5, ["thing"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    scene.write(tmp_path / "scene.tif")
    return scene


def faint_spots(x0: int, y0: int) -> list[tuple[tuple[int, int, int, int], int]]:
    """Four dim objects in the 64-px square at (x0, y0)."""
    return [((x0 + dx, y0 + dy, x0 + dx + 12, y0 + dy + 12), DIM) for dx in (10, 40) for dy in (10, 40)]


def suggest(tmp_path, scene: Scene, net=None, **kwargs):
    kwargs.setdefault("training_areas", [scene.to_crs(box(0, 0, SIDE, SIDE))])
    with rasterio.open(tmp_path / "scene.tif") as src:
        return suggest_areas(model(net), src, **kwargs)


def pixels(scene: Scene, geometry) -> tuple[int, ...]:
    inv = ~scene.transform
    (x0, y0), (x1, y1) = inv @ geometry.bounds[:2], inv @ geometry.bounds[2:]
    return tuple(int(round(v)) for v in (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))


def test_the_square_of_faint_candidates_comes_first_with_its_reason(tmp_path):
    scene = write_scene(tmp_path, faint_spots(128, 64) + [((140, 200, 150, 210), DIM)])
    found = suggest(tmp_path, scene)
    assert [s.rank for s in found] == list(range(1, len(found) + 1))
    assert pixels(scene, found[0].geometry) == (128, 64, 192, 128)
    assert found[0].reason == REASONS["faint"]
    assert found[0].score == pytest.approx(1.0, abs=0.01)
    assert pixels(scene, found[1].geometry) == (128, 192, 192, 256)
    assert found[1].score < found[0].score
    assert len(found) == 2  # plain ground has no signal: nothing more is proposed


def test_misses_in_the_accuracy_areas_say_so_and_false_detections_weigh_the_detected_squares_up(tmp_path):
    bright = [((30, 150, 50, 170), BRIGHT), ((70, 200, 90, 220), BRIGHT)]  # square (0, 128) and (64, 192)
    scene = write_scene(tmp_path, faint_spots(192, 0) + bright)
    anywhere = scene.to_crs(box(0, 0, 1, 1))
    missed = suggest(tmp_path, scene, review=[(anywhere, "thing", "miss")] * 3 + [(anywhere, "thing", "match")])
    assert pixels(scene, missed[0].geometry) == (192, 0, 256, 64)
    assert missed[0].reason == REASONS["faint_missed"]
    false = suggest(tmp_path, scene, review=[(anywhere, "thing", "false_detection")] * 3)
    assert pixels(scene, false[0].geometry) in {(0, 128, 64, 192), (64, 192, 128, 256)}
    assert false[0].reason == REASONS["detected"]


def test_a_detector_that_answers_differently_mirrored_is_unsure_there(tmp_path):
    scene = write_scene(tmp_path, [((150, 150, 170, 170), BRIGHT)])  # in square (128, 128)
    found = suggest(tmp_path, scene, net=Shifted())
    assert pixels(scene, found[0].geometry) == (128, 128, 192, 192)
    assert found[0].reason == REASONS["disagreement"]
    assert found[0].signals["disagreement"] > 0
    assert suggest(tmp_path, scene) == []  # the same detector, sure of itself: nothing to propose


def test_training_and_accuracy_areas_are_never_proposed(tmp_path):
    scene = write_scene(tmp_path, faint_spots(0, 0) + faint_spots(64, 0) + faint_spots(128, 128))
    found = suggest(tmp_path, scene, accuracy_areas=[scene.to_crs(box(64, 0, 128, 64))])
    assert [pixels(scene, s.geometry) for s in found] == [(128, 128, 192, 192)]


def test_the_squares_read_are_capped_whatever_the_image_size(tmp_path, monkeypatch):
    scene = write_scene(tmp_path, faint_spots(128, 64))
    calls = []
    real = ml_predict.predict_array
    monkeypatch.setattr(recommend, "predict_array", lambda m, image: calls.append(image.shape) or real(m, image))
    suggest(tmp_path, scene, max_windows=3)
    assert len(calls) == 2 * 3  # each square as read and mirrored
    calls.clear()
    margin = Recipe().overlap
    suggest(tmp_path, scene, max_pixels=2 * 2 * (SIDE + 2 * margin) ** 2)
    assert len(calls) == 2 * 2


def test_squares_of_no_image_are_skipped(tmp_path, monkeypatch):
    scene = write_scene(tmp_path, faint_spots(128, 64))
    with rasterio.open(tmp_path / "scene.tif", "r+") as dst:  # a nodata collar, read as zeros
        dst.write(np.zeros((3, 64, 256), np.uint8), window=rasterio.windows.Window(0, 192, 256, 64))
    calls = []
    real = ml_predict.predict_array
    monkeypatch.setattr(recommend, "predict_array", lambda m, image: calls.append(image.shape) or real(m, image))
    found = suggest(tmp_path, scene)
    assert len(calls) == 2 * (16 - 1 - 4)  # 16 squares, less the training area and the 4 of the collar
    assert [pixels(scene, s.geometry) for s in found] == [(128, 64, 192, 128)]


def test_the_side_follows_the_training_areas_within_bounds():
    t = Affine(0.5, 0, 0, 0, -0.5, 0)
    areas = [box(0, -40, 40, 0), box(0, -60, 60, 0), box(0, -500, 500, 0)]  # 80, 120 and 1000 px
    assert suggestion_side(areas, t, 5000, 5000) == 120
    assert suggestion_side([box(0, -5, 5, 0)], t, 5000, 5000) == recommend.MIN_SIDE
    assert suggestion_side([box(0, -5000, 5000, 0)], t, 5000, 5000) == recommend.MAX_SIDE
    assert suggestion_side([], t, 5000, 5000) == recommend.DEFAULT_SIDE
    assert suggestion_side([box(0, -100, 100, 0)], t, 800, 1000) == 200  # a quarter of the image at most
    assert suggestion_side([box(0, -100, 100, 0)], t, 200, 1000) == recommend.MIN_SIDE
    assert suggestion_side([], t, 50, 180) == 50  # never larger than the image


def test_candidate_windows_leave_out_drawn_squares_and_sample_the_same_way_each_time():
    all_ = candidate_windows(1000, 1000, 100, [], 1000)
    assert len(all_) == 100
    drawn = [box(0, 0, 150, 100)]  # one square whole, half of the next: both left out
    assert len(candidate_windows(1000, 1000, 100, drawn, 1000)) == 98
    assert len(candidate_windows(1000, 1000, 100, [box(0, 0, 102, 100)], 1000)) == 99  # a sliver is allowed
    sample = candidate_windows(1000, 1000, 100, [], 10)
    assert len(sample) == 10 and sample == candidate_windows(1000, 1000, 100, [], 10)
    assert len({(w.col_off, w.row_off) for w in sample}) == 10


def test_counting_objects_ranks_many_small_unsure_objects_over_one_large_unsure_shape(tmp_path):
    # square (0, 128): four faint 12-px objects (576 px); square (128, 128): one faint 30 x 30 shape (900 px)
    scene = write_scene(tmp_path, faint_spots(0, 128) + [((145, 145, 175, 175), DIM)])
    by_pixels = suggest(tmp_path, scene)
    assert pixels(scene, by_pixels[0].geometry) == (128, 128, 192, 192)
    by_objects = suggest(tmp_path, scene, unit="objects")
    assert pixels(scene, by_objects[0].geometry) == (0, 128, 64, 192)
    assert by_objects[0].signals == {"faint": 4.0, "disagreement": 0.0, "detected": 0.0}
    assert by_objects[1].signals["faint"] == 1.0 and by_objects[0].reason == REASONS["faint"]
    with pytest.raises(ValueError, match="unit"):
        suggest(tmp_path, scene, unit="hectares")


def test_object_counts_leave_out_regions_smaller_than_the_smallest_object():
    faint = np.zeros((40, 40), bool)
    faint[2:6, 2:6] = True  # 16 px: an object
    faint[10:12, 10:12] = True  # 4 px: a speck
    faint[20:23, 20:23] = True  # 9 px and its diagonal neighbour: one region of 10 px with 8-neighbours
    faint[23, 23] = True
    sliver = np.zeros((40, 40), bool)
    sliver[30, 0:7] = True  # 7 px: over half the smallest object (12 / 2)
    counts = recommend.object_counts(faint, sliver, np.zeros((40, 40), bool), min_area_px=10.0)
    assert counts == {"faint": 2.0, "disagreement": 1.0, "detected": 0.0}


class MeanColour(Brightness):
    """An encoder whose only feature is the pixels' colour: squares look alike when their colours are alike."""

    def encode(self, batch: torch.Tensor) -> list[torch.Tensor]:
        return [batch.float() / 255.0]


def test_ranked_by_typical_the_next_square_is_common_in_the_image_and_unlike_the_training_area(tmp_path):
    red, grey, blue = (150, 60, 60), (60, 60, 60), (60, 60, 250)
    image = np.empty((3, 256, 256), np.uint8)
    image[:] = np.array(red, np.uint8)[:, None, None]  # most of the image
    image[:, 0:64, 0:128] = np.array(grey, np.uint8)[:, None, None]  # the training area and its neighbour
    image[:, 192:256, 192:256] = np.array(blue, np.uint8)[:, None, None]  # one odd square
    scene = Scene(image, [], 0.5, ["thing"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    scene.write(tmp_path / "scene.tif")
    found = suggest(tmp_path, scene, MeanColour(), rank_by="typical", max_suggestions=20)
    at = [pixels(scene, s.geometry)[:2] for s in found]
    assert at[0] not in {(64, 0), (192, 192)} and found[0].reason == REASONS["typical"]
    assert (64, 0) not in at  # looks like the training area: nothing to learn there
    assert at.index((192, 192)) == len(at) - 1  # unlike it, but like no other square either
    assert len(found) == 14 and [s.rank for s in found] == list(range(1, 15))


def test_typicality_is_closeness_to_the_nearest_squares_and_unlike_is_distance_to_the_labelled():
    squares = np.array([[1.0, 0.0], [1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    signals = recommend.typical_and_unlike(squares, np.array([[0.0, 1.0]]), neighbours=1)
    assert signals[0]["typical"] == signals[1]["typical"] > signals[2]["typical"] > signals[3]["typical"]
    assert signals[3]["unlike_labelled"] == 0.0 and signals[0]["unlike_labelled"] == pytest.approx(np.sqrt(2))
    assert recommend.typical_scores(signals)[3] == 0.0 and recommend.typical_scores(signals)[0] == 1.0
    assert all(s["unlike_labelled"] == 1.0 for s in recommend.typical_and_unlike(squares, np.empty((0, 2))))


def test_an_unknown_ranking_is_refused(tmp_path):
    scene = write_scene(tmp_path, [])
    with pytest.raises(ValueError, match="ranking"):
        suggest(tmp_path, scene, rank_by="loudest")
