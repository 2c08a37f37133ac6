"""The choices training makes from the imagery (scale matching, the size prior) and encoder fine-tuning:
each is written into the model's recipe so a saved model predicts as it was trained."""

import numpy as np
import torch
from shapely.geometry import Point, box

from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage, build_samples
from workers.ml.model_card import load_model, save_model
from workers.ml.predict import predict_array
from workers.ml.synthetic import tiny_scene
from workers.ml.train import build_network, fit_recipe_to_outlines, train_detector
from workers.ml.trained import TrainedModel


def _scene_item(tmp_path, radius=8, size=128):
    scene = tiny_scene(seed=1, size=size, n=8, radius=radius)
    path = scene.write(tmp_path / "s.tif")
    item = LabelledImage(str(path), [scene.to_crs(box(0, 0, size, size))],
                         [(scene.to_crs(g), c) for g, c in scene.objects], [])
    return scene, item


def test_scale_and_size_prior_come_from_the_outlines(tmp_path):
    scene, item = _scene_item(tmp_path, radius=8)
    areas_px = sorted(g.area for g, _ in scene.objects)  # the scene's pixel geometries
    across = float(np.sqrt(np.median(areas_px)))
    fitted = fit_recipe_to_outlines([item], Recipe(target_object_px=2 * across, size_prior=0.5))
    assert fitted.scale == 2.0
    assert np.isclose(fitted.min_area_px, 0.5 * areas_px[0], rtol=1e-3)
    # clipped to the allowed range, in quarter steps; nothing changes when every choice is off
    assert fit_recipe_to_outlines([item], Recipe(target_object_px=100 * across)).scale == 2.0
    assert fit_recipe_to_outlines([item], Recipe(target_object_px=1.3 * across)).scale == 1.25
    off = Recipe(size_prior=0.0, peak_spacing=0.0, min_outline_px_for_stride=0.0)
    assert fit_recipe_to_outlines([item], off) == off
    # seeds at least a fraction of the median outline's width apart
    assert np.isclose(fit_recipe_to_outlines([item], Recipe(peak_spacing=0.5)).seed_radius_px, 0.5 * across, atol=0.05)
    assert fit_recipe_to_outlines([item], Recipe(peak_spacing=0.5), count=False).seed_radius_px == 0.0
    assert Recipe().size_prior > 0  # the default drops fragments
    # segmentation regions cut by a window or an area edge are legitimately small: no prior there
    assert fit_recipe_to_outlines([item], Recipe(), count=False).min_area_px == Recipe().min_area_px
    # a size prior never lowers the configured floor
    assert fit_recipe_to_outlines([item], Recipe(size_prior=1e-6)).min_area_px == Recipe().min_area_px


def test_chips_at_scale_two_cover_half_the_pixels_with_objects_twice_as_wide(tmp_path):
    scene, item = _scene_item(tmp_path, radius=8)
    cfg = DetectorConfig(classes=["disc"], tile_size=64)
    rng = np.random.default_rng(0)
    one = build_samples([item], cfg, Recipe(max_chips=4), np.random.default_rng(0))
    two = build_samples([item], cfg, Recipe(max_chips=4, scale=2.0), rng)
    for s in one + two:
        assert s["image"].shape == (3, 64, 64) and s["mask"].shape == (64, 64)
    w1 = one[0]["bounds"][2] - one[0]["bounds"][0]
    w2 = two[0]["bounds"][2] - two[0]["bounds"][0]
    assert np.isclose(w2, w1 / 2)
    # each image pixel of an object becomes ~4 chip pixels at scale 2
    import rasterio

    with rasterio.open(item.source) as src:
        px_area = abs(src.transform.a * src.transform.e)
    for s in two:
        foot = box(*s["bounds"])
        native = sum(g.intersection(foot).area for g, _ in item.outlines) / px_area
        assert abs((s["mask"] == 1).sum() - 4 * native) <= 0.1 * 4 * native + 8


def test_prediction_at_scale_two_returns_the_image_grid():
    torch.manual_seed(0)
    cfg = DetectorConfig(classes=["disc"], tile_size=64)
    recipe = Recipe(predict_tile=128, overlap=16, scale=2.0)
    m = TrainedModel(build_network(cfg, recipe).eval(), cfg, recipe, {})
    seen = []
    encode = m.network.encode
    m.network.encode = lambda x: seen.append(tuple(x.shape[-2:])) or encode(x)
    img = np.random.default_rng(0).integers(0, 255, (3, 150, 203), dtype=np.uint8)
    p = predict_array(m, img)
    assert p.shape == (3, 150, 203)
    assert np.allclose(p[:2].sum(0), 1.0, atol=1e-4)
    # the network saw the pixels at twice their size: tiles of ~2x the image pixels they cover
    assert seen and sum(h * w for h, w in seen) >= 4 * 150 * 203


def test_fine_tuned_encoder_blocks_train_save_and_reload(tmp_path):
    _, item = _scene_item(tmp_path)
    cfg = DetectorConfig(classes=["disc"], tile_size=64)
    recipe = Recipe(train_blocks=1, max_steps=3, min_steps=1, predict_tile=128, overlap=16,
                    target_object_px=24, size_prior=0.3)
    torch.manual_seed(0)
    before = build_network(cfg, recipe).encoder.tail.state_dict()
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
    assert m.card["training"]["steps"] == 3
    after = m.network.encoder.tail.state_dict()
    assert any(not torch.equal(before[k], v) for k, v in after.items() if v.is_floating_point())
    assert m.recipe.scale == m.card["scale"] and m.recipe.min_area_px > Recipe().min_area_px
    assert "Trained 3 steps" in m.card["summary"] and "last 1 layers" in m.card["summary"]
    save_model(m, tmp_path / "m")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "m" / "weights.safetensors")
    assert any(k.startswith("encoder.tail.") for k in saved)
    assert not any(k.startswith("encoder.") and not k.startswith("encoder.tail.") for k in saved)
    m2 = load_model(tmp_path / "m", device="cpu")
    assert m2.recipe == m.recipe
    img = np.random.default_rng(2).integers(0, 255, (3, 96, 96), dtype=np.uint8)
    assert np.array_equal(predict_array(m, img), predict_array(m2, img))


def test_size_prior_drops_fragments_far_smaller_than_any_outline():
    from workers.ml.postprocess import labels_to_detections

    labels = np.zeros((64, 64), np.int32)
    labels[5:25, 5:25] = 1  # 400 px: an object
    labels[40:43, 40:43] = 2  # 9 px: a fragment
    probs = np.zeros((3, 64, 64), np.float32)
    probs[0] = 1.0
    probs[0][labels > 0] = 0.1
    probs[1] = 1.0 - probs[0]
    from affine import Affine

    cfg = DetectorConfig(classes=["disc"])
    kept = labels_to_detections(labels, probs, Affine.identity(), cfg, Recipe(min_area_px=8))
    assert len(kept) == 2
    kept = labels_to_detections(labels, probs, Affine.identity(), cfg, Recipe(min_area_px=0.5 * 300))
    assert len(kept) == 1 and kept[0].geometry.area > 300
    assert Point(15, 15).within(kept[0].geometry)
    # the upper side, when set: regions far larger than any outline are merged objects
    kept = labels_to_detections(labels, probs, Affine.identity(), cfg, Recipe(min_area_px=8, max_area_px=100))
    assert len(kept) == 1 and kept[0].geometry.area < 20
