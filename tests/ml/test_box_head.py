"""The box-size and centre heads (CenterNet-style, ``bbox`` output): their target, its augmentation, the boxes
decoded from them, and a small training run showing they learn the boxes' shape and centre."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from shapely.geometry import box

from workers.ml.calibration import calibrate_post_processing
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage, box_size_target, rasterize_targets
from workers.ml.model_card import load_model, save_model
from workers.ml.postprocess import instance_labels, labels_to_detections
from workers.ml.predict import predict_areas, predict_array
from workers.ml.synthetic import SCENE_ORIGIN, Scene
from workers.ml.train import _dihedral_sizes, augment, train_detector


def test_the_target_holds_the_whole_outlines_box_sides_at_its_pixels():
    outlines = [(box(-6, 2, 14, 12), 1), (box(30, 30, 34, 46), 1)]  # the first crosses the chip's edge
    mask, core, sizes = rasterize_targets(outlines, [box(0, 0, 64, 64)], (64, 64), 0.45)
    assert sizes.shape == (4, 64, 64) and sizes.dtype == np.float32
    assert np.allclose(np.exp(sizes[:2, 7, 3]), [20, 10])  # the whole box, not the part inside the chip
    assert np.allclose(np.exp(sizes[:2, 40, 32]), [4, 16])
    # the offset from the pixel's centre (3.5, 7.5) to the box's (4, 7), in box sides
    assert np.allclose(sizes[2:, 7, 3], [0.5 / 20, -0.5 / 10])
    assert np.allclose(sizes[2:, 40, 32], [(32 - 32.5) / 4, (38 - 40.5) / 16])
    assert (sizes[:, mask == 0] == 0).all()
    ids = np.zeros((8, 8), np.int32)
    assert not box_size_target(ids, []).any()


def test_a_quarter_turn_swaps_width_and_height_and_a_flip_does_not():
    sizes = torch.zeros((1, 2, 4, 4))
    sizes[0, 0], sizes[0, 1] = np.log(20), np.log(10)
    assert torch.allclose(_dihedral_sizes(sizes, 1, False)[0, :, 0, 0].exp(), torch.tensor([10.0, 20.0]))
    assert torch.allclose(_dihedral_sizes(sizes, 2, True)[0, :, 0, 0].exp(), torch.tensor([20.0, 10.0]))


def test_augmentation_keeps_the_size_target_true_to_the_turned_and_rescaled_objects():
    """After augmentation (turns, flips, scale jitter), the object under each target pixel still has the
    box the target says, and the pixels' offsets still point at its centre: measured on the augmented mask."""
    rect = box(64, 96, 176, 144)  # 112 x 48, in a 256 px chip (the scale jitter works in 32 px steps)
    mask, core, sizes = rasterize_targets([(rect, 1)], [box(0, 0, 256, 256)], (256, 256), 0.45)
    image = torch.zeros((1, 3, 256, 256))
    gen = torch.Generator().manual_seed(3)
    seen_turned = seen_rescaled = False
    for _ in range(24):
        _, m, _, s = augment(image, torch.from_numpy(mask)[None], torch.from_numpy(core)[None],
                             torch.from_numpy(sizes)[None], gen)
        on = (m[0] == 1).numpy()
        rows, cols = np.flatnonzero(on.any(1)), np.flatnonzero(on.any(0))
        width, height = cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1
        got = s[0][:2, torch.from_numpy(on)].exp().mean(1).numpy()
        assert got == pytest.approx([width, height], rel=0.1)
        ys, xs = np.nonzero(on)
        u, v = s[0][2:, torch.from_numpy(on)].numpy()
        votes_x, votes_y = xs + 0.5 + u * got[0], ys + 0.5 + v * got[1]
        assert np.abs(votes_x - (cols[0] + width / 2)).max() < 3
        assert np.abs(votes_y - (rows[0] + height / 2)).max() < 3
        seen_turned |= height > width
        seen_rescaled |= abs(width - 112) > 2 and abs(width - 48) > 2
    assert seen_turned and seen_rescaled


def _blob_probs() -> tuple[np.ndarray, np.ndarray]:
    probs = np.zeros((3, 40, 50), np.float32)
    probs[0] = 1.0
    probs[0, 10:20, 10:30], probs[1, 10:20, 10:30] = 0.0, 1.0
    probs[2, 13:17, 16:24] = 0.9  # the core, centred on the blob
    sizes = np.zeros((4, 40, 50), np.float32)
    sizes[0], sizes[1] = np.log(36), np.log(16)
    return probs, sizes


def test_touching_objects_whose_pixels_vote_for_two_centres_come_out_as_two():
    """One foreground blob whose core is one region (connected seeds: one object), but whose left half votes
    for a centre at x 15 and right half for one at x 35: grouping by votes gives two objects, each pixel
    with its own side; without offsets there is nothing to group by and the rule falls back to the seeds."""
    probs = np.zeros((3, 30, 50), np.float32)
    probs[0] = 1.0
    probs[0, 10:20, 5:45], probs[1, 10:20, 5:45] = 0.0, 1.0
    probs[2, 13:17, 10:40] = 0.9
    boxes = np.zeros((4, 30, 50), np.float32)
    boxes[0], boxes[1] = np.log(20), np.log(10)
    xs = np.arange(50) + 0.5
    boxes[2] = np.where(xs < 25, 15 - xs, 35 - xs) / 20
    boxes[3] = (15 - (np.arange(30)[:, None] + 0.5)) / 10
    recipe = Recipe(seed_radius_px=5.0, vote_seeds=True, min_area_px=20)
    labels, n = instance_labels(probs, "count", recipe, boxes)
    assert n == 2
    assert set(np.unique(labels[10:20, 5:25])) == {1} and set(np.unique(labels[10:20, 25:45])) == {2}
    assert (labels[probs[0] == 1.0] == 0).all()
    assert instance_labels(probs, "count", replace(recipe, vote_seeds=False), boxes)[1] == 1
    assert instance_labels(probs, "count", recipe, boxes[:2])[1] == 1  # no offsets: the peaks as before
    # votes far from any peak (over half the box's longer side) join nothing
    boxes[2, 10:20, 40:45] = 2.0
    labels, n = instance_labels(probs, "count", recipe, boxes)
    assert n == 2 and (labels[10:20, 40:45] == 0).all()


def test_a_centre_head_moves_the_box_to_where_its_pixels_vote():
    """Every pixel votes for its box's centre (its offset times its predicted side): the box is centred on
    the votes' mean, not on the region's centre; the sizes are unchanged."""
    probs, sizes = _blob_probs()
    sizes[2], sizes[3] = 0.1, -0.125  # 3.6 px right (of 36), 2 px up (of 16)
    cfg = DetectorConfig(output_type="bbox")
    labels, _ = instance_labels(probs, "count", Recipe())
    recipe = Recipe(box_region_share=0.0)
    (voted,) = labels_to_detections(labels, probs, Affine.identity(), cfg, recipe, box_sizes=sizes)
    assert voted.geometry.bounds == pytest.approx((23.6 - 18, 13 - 8, 23.6 + 18, 13 + 8))
    (unvoted,) = labels_to_detections(labels, probs, Affine.identity(), cfg, recipe, box_sizes=sizes[:2])
    assert unvoted.geometry.bounds == pytest.approx((2, 7, 38, 23))


def test_head_boxes_are_the_predicted_size_about_the_objects_centre():
    probs, sizes = _blob_probs()
    cfg = DetectorConfig(output_type="bbox")
    labels, n = instance_labels(probs, "count", Recipe())
    assert n == 1
    (region,) = labels_to_detections(labels, probs, Affine.identity(), cfg, Recipe())
    assert region.geometry.bounds == (10, 10, 30, 20)
    (head,) = labels_to_detections(labels, probs, Affine.identity(), cfg, Recipe(box_region_share=0.0),
                                   box_sizes=sizes)
    assert head.geometry.bounds == pytest.approx((2, 7, 38, 23))
    assert head.score == region.score
    # blended (the default): each side the geometric mean of the head's (36 x 16) and the region's (20 x 10),
    # about the same centre
    (blend,) = labels_to_detections(labels, probs, Affine.identity(), cfg, Recipe(), box_sizes=sizes)
    w, h = np.sqrt(36 * 20), np.sqrt(16 * 10)
    assert blend.geometry.bounds == pytest.approx((20 - w / 2, 15 - h / 2, 20 + w / 2, 15 + h / 2))
    # polygon output ignores the head
    (poly,) = labels_to_detections(labels, probs, Affine.identity(), DetectorConfig(), Recipe(), box_sizes=sizes)
    assert poly.geometry.area == pytest.approx(200, rel=0.05)


CENTRES = [(y, x) for y in (20, 60, 100, 140) for x in (20, 60, 100, 140)]


def _loose_boxes_scene(tmp_path) -> LabelledImage:
    """Bright 12 x 12 crowns on a textured ground, each outlined by a loose 22 x 22 box (as people draw
    crowns): boxes around the predicted regions are too small, the head learns the drawn size."""
    rng = np.random.default_rng(0)
    image = np.clip(rng.normal(70, 12, (3, 160, 160)), 0, 255).astype(np.uint8)
    for cy, cx in CENTRES:
        image[:, cy - 6 : cy + 6, cx - 6 : cx + 6] = np.clip(rng.normal(190, 10, (3, 12, 12)), 0, 255).astype(np.uint8)
    scene = Scene(image, [], 0.5, ["tree"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    path = scene.write(tmp_path / "crowns.tif")
    outlines = [box(cx - 11, cy - 11, cx + 11, cy + 11) for cy, cx in CENTRES]
    return LabelledImage(str(path), [scene.to_crs(box(0, 0, 160, 160))], [(scene.to_crs(g), "tree") for g in outlines])


def test_a_trained_head_learns_the_drawn_box_size_and_survives_saving(tmp_path):
    item = _loose_boxes_scene(tmp_path)
    cfg = DetectorConfig(classes=["tree"], tile_size=64, output_type="bbox")
    recipe = Recipe(box_head=True, max_steps=150, min_steps=1, predict_tile=128, overlap=16, max_chips=24)
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None, seed=0)
    assert m.network.box_head
    with rasterio.open(item.source) as src:
        image = src.read()
    out = predict_array(m, image)
    assert out.shape == (7, 160, 160)  # background, tree, core, log width, log height, centre offsets u, v
    width = np.exp(np.median([out[3, r, c] for r, c in CENTRES]))
    height = np.exp(np.median([out[4, r, c] for r, c in CENTRES]))
    assert 18 < width < 27 and 18 < height < 27  # the drawn 22 px, not the visible 12 px
    # pixels 4 px off a crown's centre point back at it (pixel centres at +0.5: the box centre is at cx)
    errors = [(c + 0.5 + out[5, r, c] * np.exp(out[3, r, c]) - cx, r + 0.5 + out[6, r, c] * np.exp(out[4, r, c]) - cy)
              for cy, cx in CENTRES for r, c in ((cy - 4, cx - 4), (cy + 3, cx + 3))]
    assert np.median(np.abs(errors)) < 1.5
    # calibration chose seeds and threshold; with a head the boxes are always the blended ones, and the
    # card says so
    fit = m.card["calibration"]
    assert set(fit["training_f1"]) == ({"votes"} if Recipe().vote_seeds else {"connected", "peaks"})
    assert fit["boxes"] == "blended" and m.recipe.regress_boxes and m.recipe.box_region_share == 0.5
    assert "between the size it learnt from your boxes and the object's visible extent" in m.card["summary"]
    assert "centred where it learnt your boxes are centred" in m.card["summary"]
    # asked for vote seeds, calibration keeps them and fits the threshold alone
    voting = replace(m, recipe=replace(m.recipe, vote_seeds=True, seed_radius_px=11.0))
    recipe_votes, report = calibrate_post_processing(voting, [item])
    assert recipe_votes.vote_seeds and report["seeds"] == "votes" and set(report["training_f1"]) == {"votes"}
    save_model(m, tmp_path / "model")
    again = load_model(tmp_path / "model", device="cpu")
    assert again.network.box_head and np.array_equal(predict_array(again, image), out)
    head = replace(m, recipe=replace(m.recipe, regress_boxes=True, min_score=0.0))
    with rasterio.open(item.source) as src:
        found = predict_areas(head, src, item.training_areas)
    assert found and all(d.geometry.is_valid and d.geometry.area > 0 for d in found)


def test_the_head_exists_only_where_boxes_are_wanted(tmp_path):
    item = _loose_boxes_scene(tmp_path)
    recipe = Recipe(box_head=True, max_steps=2, min_steps=1, predict_tile=128, overlap=16, max_chips=4)
    for cfg in (DetectorConfig(classes=["tree"], tile_size=64),
                DetectorConfig(classes=["tree"], tile_size=64, output_type="bbox", detection_type="segmentation")):
        m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
        assert not m.network.box_head
        assert predict_array(m, np.zeros((3, 64, 64), np.uint8)).shape[0] == 3


def test_models_saved_before_the_head_existed_still_load(tmp_path):
    item = _loose_boxes_scene(tmp_path)
    cfg = DetectorConfig(classes=["tree"], tile_size=64, output_type="bbox")
    recipe = Recipe(box_head=False, max_steps=2, min_steps=1, predict_tile=128, overlap=16, max_chips=4)
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
    card = save_model(m, tmp_path / "old")
    data = json.loads(card.read_text())
    del data["recipe"]["box_head"], data["recipe"]["box_weight"], data["recipe"]["regress_boxes"]
    card.write_text(json.dumps(data))
    again = load_model(tmp_path / "old", device="cpu")
    assert not again.network.box_head and not again.recipe.box_head


def test_models_saved_before_the_blend_still_draw_the_heads_own_boxes(tmp_path):
    """A card without ``box_region_share`` was written when head boxes had the head's size alone: it loads
    so (a saved version predicts as it was trained); a new card keeps its blend."""
    item = _loose_boxes_scene(tmp_path)
    cfg = DetectorConfig(classes=["tree"], tile_size=64, output_type="bbox")
    recipe = Recipe(box_head=True, max_steps=2, min_steps=1, predict_tile=128, overlap=16, max_chips=4)
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
    card = save_model(m, tmp_path / "new")
    assert load_model(tmp_path / "new", device="cpu").recipe.box_region_share == 0.5
    data = json.loads(card.read_text())
    del data["recipe"]["box_region_share"]
    card.write_text(json.dumps(data))
    assert load_model(tmp_path / "new", device="cpu").recipe.box_region_share == 0.0


def test_models_saved_before_the_centre_head_load_without_it(tmp_path):
    item = _loose_boxes_scene(tmp_path)
    cfg = DetectorConfig(classes=["tree"], tile_size=64, output_type="bbox")
    recipe = Recipe(box_head=True, centre_head=False, max_steps=2, min_steps=1, predict_tile=128, overlap=16,
                    max_chips=4)
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
    assert m.network.box_channels == 2
    card = save_model(m, tmp_path / "old")
    data = json.loads(card.read_text())
    del data["recipe"]["centre_head"], data["recipe"]["centre_weight"], data["recipe"]["vote_seeds"]
    card.write_text(json.dumps(data))
    again = load_model(tmp_path / "old", device="cpu")
    assert again.network.box_channels == 2 and not again.recipe.centre_head and not again.recipe.vote_seeds
