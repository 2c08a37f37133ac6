"""Post-processing on maps averaged over 2 x 2 pixel blocks (``Recipe.postprocess_stride``): the same objects,
nearly the same outlines, each reported once by a grid of cells, in the image CRS; chosen by training from the
smallest outline. The network is replaced by exact maps of known discs, so only post-processing is measured."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window
from shapely.affinity import affine_transform
from shapely.geometry import Point, box

import workers.ml.predict as predict
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage, core_target
from workers.ml.grid import GridCell
from workers.ml.postprocess import at_stride
from workers.ml.train import build_network, fit_recipe_to_outlines
from workers.ml.trained import TrainedModel

H, W = 203, 201  # odd sides: the blocks at the bottom and right edges are half outside
TRANSFORM = Affine(0.5, 0, 500_000, 0, -0.5, 5_200_000)
DISCS = [Point(30, 32).buffer(11), Point(52, 32).buffer(11),  # touching at x = 41
         Point(103, 60).buffer(12),  # across the two cells' border (x = 100)
         Point(150, 150).buffer(9), Point(60, 140).buffer(10), Point(170, 40).buffer(12),
         Point(190, 195).buffer(9)]  # cut by the raster's corner


@pytest.fixture
def disc_raster(tmp_path, monkeypatch):
    """A raster whose first band holds each disc's id x 20, and the network replaced by the discs' exact maps
    (foreground, and each disc's core) computed from the pixels it is given."""
    ids = rasterize(((g, i + 1) for i, g in enumerate(DISCS)), out_shape=(H, W), dtype="int32")
    path = tmp_path / "discs.tif"
    with rasterio.open(path, "w", driver="GTiff", width=W, height=H, count=3, dtype="uint8", crs="EPSG:32633",
                       transform=TRANSFORM) as dst:
        dst.write(np.repeat((ids * 20).astype(np.uint8)[None], 3, 0))

    def exact_maps(model, image, tiles=None, stride=1):  # at stride 2: the 2 x 2 blocks' means, as the head's
        window_ids = image[0].astype(np.int32) // 20
        fg = (window_ids > 0).astype(np.float32)
        maps = np.stack([1 - fg, fg, core_target(window_ids, 0.45)]).astype(np.float32)
        return at_stride(maps, 3, Recipe(), stride)[0]

    monkeypatch.setattr(predict, "predict_array", exact_maps)
    return path


def _model(stride: int, output_type: str = "polygon") -> TrainedModel:
    network = SimpleNamespace(n_classes=1, box_channels=0, box_head=False)
    recipe = Recipe(overlap=32, postprocess_stride=stride, fit_post_processing=False)
    return TrainedModel(network, DetectorConfig(classes=["disc"], output_type=output_type), recipe)  # type: ignore[arg-type]


def _iou(a, b) -> float:
    return a.intersection(b).area / a.union(b).area


def test_stride_two_finds_the_same_objects_with_nearly_the_same_outlines(disc_raster):
    with rasterio.open(disc_raster) as src:
        full = predict.predict_window(_model(1), src, Window(0, 0, W, H))
        half = predict.predict_window(_model(2), src, Window(0, 0, W, H))
    assert len(full) == len(half) == len(DISCS)  # the touching pair still split
    image = affine_transform(box(0, 0, W, H), TRANSFORM.to_shapely())
    for disc in (affine_transform(g, TRANSFORM.to_shapely()) for g in DISCS):  # the discs in the image CRS
        a = max(full, key=lambda d: _iou(d.geometry, disc)).geometry
        b = max(half, key=lambda d: _iou(d.geometry, disc)).geometry
        assert b.is_valid and b.geom_type == "Polygon"
        # in the image CRS (not the blocks' pixels), as close to the stride-1 outline as a pixel allows
        assert _iou(a, b) > 0.85, (a.bounds, b.bounds)
        assert _iou(b, disc.intersection(image)) > 0.8  # the corner disc: its part inside the image


def test_a_grid_of_cells_reports_each_object_once_at_stride_two(disc_raster):
    model = _model(2)
    cells = [GridCell(0, 0, Window(0, 0, 100, H)), GridCell(0, 1, Window(100, 0, W - 100, H))]
    with rasterio.open(disc_raster) as src:
        found = [d for cell in cells for d in predict.detect_in_cell(model, src, cell, 32)]
    assert len(found) == len(DISCS)
    across = [d for d in found if d.geometry.contains(Point(500_051.5, 5_200_000 - 30))]  # the disc at (103, 60) px
    assert len(across) == 1


def test_recipes_of_both_strides_post_process_one_prediction_each_as_it_would_alone(disc_raster):
    """Calibration-style: one network pass for several recipes; a stride-1 recipe among them makes the maps full
    resolution, averaged for the stride-2 ones, so each recipe finds what it finds on its own."""
    area = affine_transform(box(0, 0, W, H), TRANSFORM.to_shapely())
    with rasterio.open(disc_raster) as src:
        both = predict.predict_areas_post_processed(_model(2), src, [area], [_model(1).recipe, _model(2).recipe])
        alone = [predict.predict_areas(_model(stride), src, [area]) for stride in (1, 2)]
    for found, expected in zip(both, alone, strict=True):
        assert len(found) == len(expected) == len(DISCS)
        assert all(a.geometry.equals_exact(b.geometry, 1e-9) for a, b in zip(found, expected, strict=True))


def test_boxes_at_stride_two_are_within_a_pixel_of_stride_ones(disc_raster):
    with rasterio.open(disc_raster) as src:
        full = predict.predict_window(_model(1, "bbox"), src, Window(0, 0, W, H))
        half = predict.predict_window(_model(2, "bbox"), src, Window(0, 0, W, H))
    a = np.array(sorted(d.geometry.bounds for d in full))
    b = np.array(sorted(d.geometry.bounds for d in half))
    assert a.shape == b.shape == (len(DISCS), 4)
    assert np.abs(a - b).max() <= 1.0 + 1e-9  # a pixel is 0.5 m here: within two pixels' edge of a block


def test_block_means_sizes_in_blocks_and_background_beyond_odd_sides():
    maps = np.random.default_rng(0).random((5, 3, 5)).astype(np.float32)  # bg, class, core, log w, log h
    out, recipe = at_stride(maps, 3, Recipe(min_area_px=12, max_area_px=400, seed_radius_px=8), 2)
    assert out.shape == (5, 2, 3)
    assert out[1, 0, 0] == pytest.approx(maps[1, :2, :2].mean())
    assert out[3, 0, 1] == pytest.approx(maps[3, :2, 2:4].mean() - np.log(2))  # a box half as many blocks wide
    assert out[0, 1, 2] == pytest.approx((maps[0, 2, 4] + 3) / 4)  # three of its pixels beyond the map: background
    assert (recipe.min_area_px, recipe.max_area_px, recipe.seed_radius_px) == (3, 100, 4)
    assert recipe.postprocess_stride == 1 and recipe.simplify_px == Recipe().simplify_px
    same, unchanged = at_stride(maps, 3, Recipe(), 1)
    assert same is maps and unchanged == Recipe()


def test_training_picks_stride_two_only_when_every_outline_is_large_enough(tmp_path):
    path = tmp_path / "unit.tif"  # pixels of 1 x 1 CRS units: outline areas are pixel counts
    with rasterio.open(path, "w", driver="GTiff", width=100, height=100, count=3, dtype="uint8",
                       crs="EPSG:32633", transform=Affine(1, 0, 0, 0, -1, 100)) as dst:
        dst.write(np.zeros((3, 100, 100), np.uint8))

    def image(radius: float) -> LabelledImage:
        outlines = [(Point(x, 50).buffer(radius), "disc") for x in (20, 60)]
        return LabelledImage(str(path), [box(0, 0, 100, 100)], outlines, [])

    recipe = Recipe(min_outline_px_for_stride=300.0)
    assert fit_recipe_to_outlines([image(10)], recipe).postprocess_stride == 2  # ~314 px each
    assert fit_recipe_to_outlines([image(9)], recipe).postprocess_stride == 1  # ~254 px
    assert fit_recipe_to_outlines([image(10)], recipe, count=False).postprocess_stride == 1  # segmentation
    assert fit_recipe_to_outlines([image(10)], replace(recipe, min_outline_px_for_stride=0)).postprocess_stride == 1


def test_block_means_of_the_upsampled_maps_computed_at_the_blocks():
    x = torch.randn(2, 5, 9, 7, generator=torch.Generator().manual_seed(0)) * 3  # bg, 2 classes, core, 1 box channel
    up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)  # as Detector.forward upsamples
    probs = torch.cat([up[:, :3].softmax(1), up[:, 3:4].sigmoid()], 1)
    torch.testing.assert_close(predict._upsampled_block_mean_probabilities(x[:, :4], 2), F.avg_pool2d(probs, 2),
                               atol=1e-6, rtol=0)
    torch.testing.assert_close(predict._upsampled_block_means(x), F.avg_pool2d(up, 2), atol=1e-5, rtol=0)


def test_maps_at_the_heads_stride_are_the_full_resolution_maps_averaged_over_blocks():
    """A count detector post-processed at stride 2 reads the network's own stride-2 output, never upsampled: the
    same maps, block for block, as the full-resolution ones averaged; over blended tiles, up to the blending
    ramp's steps (its weights are the blocks' here, the pixels' there)."""
    torch.manual_seed(0)
    config = DetectorConfig(classes=["disc"], tile_size=64, output_type="bbox")
    recipe = Recipe(predict_tile=128, overlap=16, postprocess_stride=2)
    model = TrainedModel(build_network(config, recipe).eval(), config, recipe)
    assert model.network.box_channels == 4 and predict.probability_stride(config, recipe) == 2
    for side, tolerance in ((128, 1e-5), (256, 0.03)):  # one tile; 3 x 3 blended tiles
        image = np.random.default_rng(1).integers(0, 256, (3, side, side), dtype=np.uint8)
        full = predict.predict_array(model, image)
        half = predict.predict_array(model, image, stride=2)
        averaged, _ = at_stride(full, 3, recipe, 2)  # log sizes in blocks there too
        assert half.shape == averaged.shape == (7, side // 2, side // 2)
        np.testing.assert_allclose(half, averaged, atol=tolerance, rtol=0)
        assert np.allclose(half[:2].sum(0), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="stride"):
        predict.predict_array(TrainedModel(model.network, config, replace(recipe, postprocess_stride=1)), image,
                              stride=2)


def test_test_time_augmentation_at_the_heads_stride_averages_the_same_maps():
    """The GPU recipe's mirrored and turned copies, taken back at the head's stride (box widths and heights
    swapped back after a quarter turn), give the full-resolution augmented maps averaged over blocks."""
    torch.manual_seed(0)
    config = DetectorConfig(classes=["disc"], tile_size=64, output_type="bbox")
    recipe = Recipe(predict_tile=128, overlap=16, postprocess_stride=2, tta=8)
    model = TrainedModel(build_network(config, recipe).eval(), config, recipe)
    image = np.random.default_rng(2).integers(0, 256, (3, 128, 128), dtype=np.uint8)  # one tile
    averaged, _ = at_stride(predict.predict_array(model, image), 3, recipe, 2)
    half = predict.predict_array(model, image, stride=2)
    np.testing.assert_allclose(half, averaged, atol=1e-5, rtol=0)
    plain = predict.predict_array(TrainedModel(model.network, config, replace(recipe, tta=1)), image, stride=2)
    assert np.abs(plain - half).max() > 1e-3  # the copies did change the maps
