"""Test-time augmentation (``Recipe.tta``): each tile is predicted mirrored and turned, and the maps are
taken back to the tile's pixels (box widths and heights swapped back after a quarter turn) and averaged.

A network that is itself equivariant under the dihedral group must predict the same with and without it;
the checks below also show they fail when a map is not taken back, or the size channels are not swapped."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workers.ml.predict as predict
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.dihedral import TTA_TRANSFORMS, dihedral, dihedral_sizes, undo_dihedral, undo_dihedral_sizes
from workers.ml.model_card import load_model, save_model
from workers.ml.predict import predict_array
from workers.ml.train import build_network
from workers.ml.trained import TrainedModel

CONFIG = DetectorConfig(output_type="bbox")


class EquivariantToy(nn.Module):
    """Logits that turn and mirror with the image: class and core from a symmetric blur of the grey image;
    log box width from the blurred |horizontal gradient|, log height from the |vertical gradient| (a quarter
    turn swaps them, a mirror only changes their sign)."""

    n_classes = 1
    box_head = True
    box_channels = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.float().mean(1, keepdim=True) / 255.0
        blur = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]).view(1, 1, 3, 3) / 16
        dx = torch.tensor([[0.0, 0.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]]).view(1, 1, 3, 3)
        smooth = F.conv2d(g, blur, padding=1)
        gx = F.conv2d(F.conv2d(g, dx, padding=1).abs(), blur, padding=1)
        gy = F.conv2d(F.conv2d(g, dx.transpose(-1, -2), padding=1).abs(), blur, padding=1)
        return torch.cat([-4 * smooth, 4 * smooth, 8 * smooth - 4, (1 + 9 * gx).log(), (1 + 9 * gy).log()], 1)


class ConstantSizes(EquivariantToy):
    """Every pixel's box is 20 px wide and 10 px tall, however the image is turned: not equivariant, so
    averaged over quarter turns the widths and heights mix."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        out[:, 3], out[:, 4] = float(np.log(20)), float(np.log(10))
        return out


def _image() -> np.ndarray:
    """A 200 x 300 image with no symmetry and mostly horizontal stripes (vertical gradients dominate)."""
    rng = np.random.default_rng(0)
    rows = np.arange(200)[:, None]
    stripes = 120 + 80 * np.sin(rows / 3.0) * np.ones((1, 300))
    img = stripes + rng.normal(0, 25, (200, 300))
    img[20:60, 30:140] += 60  # an off-centre block
    return np.clip(img, 0, 255).astype(np.uint8)[None].repeat(3, 0)


def _model(net: nn.Module, tta: int) -> TrainedModel:
    # 128 px tiles over a 200 x 300 image: several tiles, not square (quarter turns change their shape)
    return TrainedModel(net, CONFIG, Recipe(predict_tile=128, overlap=32, tta=tta), device="cpu")


def test_the_transforms_are_undone_exactly():
    t = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7)
    boxes = torch.arange(4 * 5 * 7, dtype=torch.float32).view(1, 4, 5, 7)  # sizes and centre offsets
    for k, flip in TTA_TRANSFORMS[8]:
        assert torch.equal(undo_dihedral(dihedral(t, k, flip), k, flip), t)
        assert torch.equal(undo_dihedral_sizes(dihedral_sizes(t, k, flip), k, flip), t)
        assert torch.equal(undo_dihedral_sizes(dihedral_sizes(boxes, k, flip), k, flip), boxes)
    assert len(set(TTA_TRANSFORMS[8])) == 8 and set(TTA_TRANSFORMS[4]) <= set(TTA_TRANSFORMS[8])
    with pytest.raises(ValueError, match="tta"):
        Recipe(tta=3)


def test_an_equivariant_network_predicts_the_same_with_test_time_augmentation():
    image = _image()
    plain = predict_array(_model(EquivariantToy(), 1), image)
    assert plain.shape == (5, 200, 300)
    # the image is anisotropic, so a missed width/height swap would show
    assert np.median(plain[4] - plain[3]) > 0.1
    for tta in (2, 4, 8):
        got = predict_array(_model(EquivariantToy(), tta), image)
        np.testing.assert_allclose(got, plain, atol=2e-5, err_msg=f"tta={tta}")


def test_the_check_fails_when_maps_are_not_taken_back_or_sizes_not_swapped(monkeypatch):
    image = _image()
    plain = predict_array(_model(EquivariantToy(), 1), image)
    with monkeypatch.context() as m:  # sizes turned back but not swapped back
        m.setattr(predict, "undo_dihedral_sizes", undo_dihedral)
        got = predict_array(_model(EquivariantToy(), 8), image)
    assert np.allclose(got[:3], plain[:3], atol=2e-5) and not np.allclose(got[3:], plain[3:], atol=1e-2)
    with monkeypatch.context() as m:  # nothing taken back: mirrored maps averaged with the image's
        m.setattr(predict, "undo_dihedral", lambda t, k, flip: t)
        got = predict_array(_model(EquivariantToy(), 2), image)
    assert not np.allclose(got[:3], plain[:3], atol=1e-2)


def test_a_quarter_turn_swaps_the_predicted_box_width_and_height_back():
    image = _image()
    for tta, (w, h) in {1: (20, 10), 2: (20, 10), 4: (20, 10), 8: (np.sqrt(200), np.sqrt(200))}.items():
        sizes = np.exp(predict_array(_model(ConstantSizes(), tta), image)[3:])
        np.testing.assert_allclose(sizes[0], w, rtol=1e-5, err_msg=f"tta={tta}")
        np.testing.assert_allclose(sizes[1], h, rtol=1e-5, err_msg=f"tta={tta}")


def test_a_saved_model_keeps_its_tta_and_an_older_card_loads_without_it(tmp_path):
    recipe = Recipe(tta=4)
    model = TrainedModel(build_network(CONFIG, recipe).eval(), CONFIG, recipe, {"format": "picterra-detector/1"})
    card = save_model(model, tmp_path)
    assert load_model(tmp_path).recipe.tta == 4
    data = json.loads(card.read_text())
    del data["recipe"]["tta"]
    card.write_text(json.dumps(data))
    assert load_model(tmp_path).recipe == replace(recipe, tta=1)
