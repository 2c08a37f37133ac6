"""Change detection in the ML core: reading a pair of dates on the first one's grid, the pair network and its
save/load, and a tiny training that learns a generated change a pixel difference cannot tell apart."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.warp import Resampling, calculate_default_transform, reproject
from rasterio.windows import Window

from workers.experiments.change_datasets import difference_baseline, labelled_pair
from workers.experiments.repository import ExperimentDataset
from workers.ml.change import NEEDS_ONE, NEEDS_PAIR, ChangeDetector, input_dates
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.evaluation import evaluate_image, evaluation_metrics
from workers.ml.model_card import WEIGHTS, load_model, load_state_equal, save_model
from workers.ml.models import Detector
from workers.ml.predict import predict_array
from workers.ml.raster_io import ImagePair, ImagePairError, ImagePairSource, open_image, open_pair, read_window
from workers.ml.synthetic import tiny_scene
from workers.ml.synthetic_change import tiny_pair
from workers.ml.train import build_network, train_detector
from workers.ml.trained import TrainedModel

UTM = "EPSG:32633"


def _write(path: Path, image: np.ndarray, crs: str | None, transform: Affine) -> str:
    c, h, w = image.shape
    with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c, dtype=image.dtype, crs=crs,
                       transform=transform) as dst:
        dst.write(image)
    return str(path)


@pytest.fixture
def scene_image() -> tuple[np.ndarray, Affine]:
    """A textured 128 px scene at 0.5 m in UTM: the first date of every pair below."""
    scene = tiny_scene(seed=1, size=128, n=8)
    return scene.image, scene.transform


# --- reading a pair ---------------------------------------------------------------------------------------


def test_pair_on_the_same_grid_reads_both_dates_exactly(tmp_path, scene_image):
    image, transform = scene_image
    later = (255 - image).astype(np.uint8)
    a = _write(tmp_path / "a.tif", image, UTM, transform)
    b = _write(tmp_path / "b.tif", later, UTM, transform)
    with open_image(ImagePairSource(a, b)) as pair:
        assert isinstance(pair, ImagePair)
        assert (pair.width, pair.height, pair.transform) == (128, 128, transform)
        got = read_window(pair, Window(-8, 10, 40, 30))  # boundless like a single image: outside is 0
    assert got.shape == (6, 30, 40) and got.dtype == np.uint8
    assert np.array_equal(got[:3, :, 8:], image[:, 10:40, :32])
    assert np.array_equal(got[3:, :, 8:], later[:, 10:40, :32])
    assert not got[:, :, :8].any()


def test_second_date_in_another_crs_and_resolution_is_read_on_the_first_grid(tmp_path, scene_image):
    image, transform = scene_image
    a = _write(tmp_path / "a.tif", image, UTM, transform)
    # the same ground in lon/lat at a coarser resolution
    bounds = rasterio.transform.array_bounds(128, 128, transform)
    dst_t, w, h = calculate_default_transform(UTM, "EPSG:4326", 128, 128, *bounds, dst_width=90, dst_height=90)
    lonlat = np.zeros((3, h, w), np.uint8)
    reproject(image, lonlat, src_transform=transform, src_crs=UTM, dst_transform=dst_t, dst_crs="EPSG:4326",
              resampling=Resampling.bilinear)
    b = _write(tmp_path / "b.tif", lonlat, "EPSG:4326", dst_t)
    unrelated = _write(tmp_path / "c.tif", tiny_scene(seed=7, size=128).image, UTM, transform)
    inner = Window(16, 16, 96, 96)  # away from the warped image's edges
    with open_image(ImagePairSource(a, b)) as pair, open_image(ImagePairSource(a, unrelated)) as other:
        got, far = read_window(pair, inner), read_window(other, inner)
    err = np.abs(got[3:].astype(int) - got[:3].astype(int)).mean()
    far_err = np.abs(far[3:].astype(int) - far[:3].astype(int)).mean()
    assert err < 0.4 * far_err, (err, far_err)  # the warp lays the second date over the first's pixels


def test_second_date_offset_and_16_bit_is_aligned_and_stretched_on_its_own(tmp_path, scene_image):
    image, transform = scene_image
    a = _write(tmp_path / "a.tif", image, UTM, transform)
    # covers the first image shifted 20 px right (10 m), in 16 bits on another range
    wide = (image[:, :, 20:].astype(np.uint16) * 40 + 1000)
    b = _write(tmp_path / "b.tif", wide, UTM, transform @ Affine.translation(20, 0))
    with open_pair(a, b) as pair:
        got = read_window(pair, Window(0, 0, 128, 128))
    assert not got[3:, :, :20].any()  # no second date there
    corr = np.corrcoef(got[:3, 4:-4, 24:-4].ravel(), got[3:, 4:-4, 24:-4].ravel())[0, 1]
    assert corr > 0.95, corr
    assert got[3:, :, 20:].max() > 200  # its own 2-98 % stretch spans the uint8 range


@pytest.mark.parametrize("case", ["bands", "no overlap", "one without crs"])
def test_pairs_that_cannot_be_compared_are_refused_in_plain_words(tmp_path, scene_image, case):
    image, transform = scene_image
    a = _write(tmp_path / "a.tif", image, UTM, transform)
    if case == "bands":
        b = _write(tmp_path / "b.tif", image[:1], UTM, transform)
        words = "different numbers of bands (3 and 1)"
    elif case == "no overlap":
        b = _write(tmp_path / "b.tif", image, UTM, transform @ Affine.translation(500, 0))
        words = "do not overlap"
    else:
        b = _write(tmp_path / "b.tif", image, None, Affine(1, 0, 100, 0, -1, 100))
        words = "has none"
    with pytest.raises(ImagePairError) as caught:
        open_pair(a, b)
    assert words in str(caught.value)
    assert str(tmp_path) not in str(caught.value)


def test_images_without_crs_pair_by_their_pixel_coordinates(tmp_path, scene_image):
    image, _ = scene_image
    a = _write(tmp_path / "a.tif", image, None, Affine(1, 0, 100, 0, -1, 100))
    half = np.ascontiguousarray(image[:, ::2, ::2])
    b = _write(tmp_path / "b.tif", half, None, Affine(2, 0, 100, 0, -2, 100))
    with open_pair(a, b) as pair:
        got = read_window(pair, Window(8, 8, 112, 112))
    corr = np.corrcoef(got[:3].astype(float).ravel(), got[3:].astype(float).ravel())[0, 1]
    assert corr > 0.8, corr


# --- the network, its checks, save and load ---------------------------------------------------------------


def _model(dates: int, output_type: str = "bbox") -> TrainedModel:
    config = DetectorConfig(classes=["new building"], output_type=output_type, tile_size=128)
    recipe = Recipe(dates=dates)
    net = build_network(config, recipe).eval()
    return TrainedModel(net, config, recipe, {"format": "picterra-detector/1", "input_images": dates})


def test_change_network_decodes_both_dates_and_their_difference():
    model = _model(2)
    net = model.network
    assert isinstance(net, ChangeDetector)
    x = torch.randint(0, 255, (2, 6, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        out = net(x)
    assert out.shape == (2, 1 + 1 + 1 + 4, 64, 96)  # background, class, core, box width and height, centre
    # the decoder reads before, after and after - before: the same image on both dates is not the same input
    # as two different ones, and swapping the dates changes the answer (the direction of a change matters)
    with torch.no_grad():
        swapped = net(torch.cat([x[:, 3:], x[:, :3]], 1))
    assert not torch.allclose(out, swapped)
    assert net.decoder.lateral[-1].in_channels == 3 * Detector(1).decoder.lateral[-1].in_channels


def test_a_model_and_its_input_must_agree_on_the_number_of_dates():
    one = np.zeros((3, 64, 64), np.uint8)
    two = np.zeros((6, 64, 64), np.uint8)
    with pytest.raises(ImagePairError, match="needs a pair"):
        predict_array(_model(2), one)
    with pytest.raises(ImagePairError) as caught:
        predict_array(_model(1), two)
    assert str(caught.value) == NEEDS_ONE
    assert predict_array(_model(2), two).shape == (7, 64, 64)
    assert input_dates(["a.tif"]) == 1 and input_dates([ImagePairSource("a", "b")]) == 2
    with pytest.raises(ImagePairError, match="Some training images are pairs"):
        input_dates(["a.tif", ImagePairSource("a", "b")])
    assert "(before and after)" in NEEDS_PAIR


def test_a_saved_change_model_says_it_needs_a_pair_and_loads_as_one(tmp_path):
    model = _model(2)
    card = save_model(model, tmp_path / "m")
    assert '"dates": 2' in card.read_text() and '"input_images": 2' in card.read_text()
    from safetensors.torch import load_file

    assert not any(k.startswith("encoder.") for k in load_file(str(tmp_path / "m" / WEIGHTS)))  # shipped encoder
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded.network, ChangeDetector) and loaded.recipe.dates == 2
    assert load_state_equal(model, loaded)
    x = np.random.default_rng(0).integers(0, 255, (6, 64, 64), dtype=np.uint8)
    assert np.array_equal(predict_array(model, x), predict_array(loaded, x))


def test_a_single_image_model_saved_before_pairs_existed_loads_unchanged(tmp_path):
    model = _model(1, "polygon")
    card = save_model(model, tmp_path / "m")
    saved = json.loads(card.read_text())
    del saved["recipe"]["dates"], saved["input_images"]  # a card written before pairs existed
    card.write_text(json.dumps(saved))
    loaded = load_model(tmp_path / "m")
    assert type(loaded.network) is Detector and loaded.recipe.dates == 1
    assert load_state_equal(model, loaded)


# --- a tiny training ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_learns_a_generated_change_better_than_a_pixel_difference(tmp_path):
    """Discs appear and disappear between two dates whose light and registration differ: a threshold on the
    difference finds both; the change model learns which direction is labelled."""
    pair = tiny_pair(seed=2, size=256)
    item, truth = labelled_pair(pair, tmp_path / "pair", max_outlines=100, area_px=128, seed=0)
    ds = ExperimentDataset("tiny", item, truth, pair.classes)
    assert 5 <= len(item.outlines) <= 100 and len(truth) - len(item.outlines) >= 8
    baseline = difference_baseline(ds)
    config = DetectorConfig(classes=pair.classes, tile_size=128)
    # a fixed step count (not a time budget) keeps the test deterministic on a busy machine
    # and small crops without the post-processing fit keep it near 50 s of CPU
    recipe = Recipe(max_chips=16, feature_variants=1, batch_size=8, train_crop=64, max_steps=120,
                    fit_post_processing=False)
    model = train_detector([item], config, recipe=recipe, time_budget_s=None)
    assert model.recipe.dates == 2 and model.card["input_images"] == 2
    with open_image(item.source) as src:
        evaluation = evaluate_image(model, src, classes=pair.classes, detection_type="count",
                                    accuracy_areas=item.accuracy_areas, truth=truth)
    f1 = evaluation_metrics([evaluation], pair.classes, "count")["overall"]["f1"]
    assert f1 >= 0.8 and f1 > baseline["f1"] + 0.15, (f1, baseline)


# --- the change datasets --------------------------------------------------------------------------------------


def test_change_datasets_are_listed_for_runs_but_not_among_single_image_datasets():
    from workers.experiments import repository

    assert repository.select("change/*") == ["change/buildings-new", "change/trees-cleared"]
    assert not any(n.startswith("change/") for n in repository.dataset_names())


@pytest.mark.slow
def test_on_a_generated_change_dataset_a_pixel_difference_alone_fails(tmp_path):
    from workers.experiments.change_datasets import change_dataset

    ds = change_dataset("buildings-new", root=tmp_path)
    assert isinstance(ds.item.source, ImagePairSource)
    assert 20 <= len(ds.item.outlines) <= 100
    baseline = difference_baseline(ds)
    assert baseline["f1"] < 0.6 and baseline["precision"] < 0.5, baseline  # it finds what it should ignore
