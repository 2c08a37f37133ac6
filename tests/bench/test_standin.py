"""The ceiling bench's stand-in network (bench/standin.py) answers what the network it recorded answers."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from rasterio.windows import Window
from torch import nn

from bench.detect_platform import SCENE, big_image_region
from bench.standin import (
    RecordedNetwork,
    RecordedOutputs,
    install_window_positions,
    record_outputs,
    use_recorded_network,
)
from workers.ml import predict
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.trained import TrainedModel


class Pointwise(nn.Module):
    """A network that sees no context (a 1x1 convolution): recorded and replayed, it must come back exactly,
    wherever the tiles fall (across the copies' seams, over the image's edge)."""

    n_classes = 1
    box_head = True
    box_channels = 2

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 5, 1)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        return self.conv(tiles.float() / 255)


def test_the_stand_in_answers_the_recorded_outputs_where_each_tile_lies_and_nowhere_else(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    scene = SimpleNamespace(image=rng.integers(0, 256, (3, SCENE, SCENE), dtype=np.uint8))
    size, margin = 2500, 32
    network = Pointwise()
    outputs = RecordedOutputs(record_outputs(network, scene, tmp_path / "outputs.npy"), size)
    assert outputs.maps.shape == (8, 5, SCENE, SCENE) and outputs.maps.dtype == np.float32
    config = DetectorConfig.from_dict({"classes": ["tree"]})
    real = TrainedModel(network=network, config=config, recipe=Recipe())
    standin = use_recorded_network(TrainedModel(network=network, config=config, recipe=Recipe()), outputs)
    assert isinstance(standin.network, RecordedNetwork) and real.network is network
    monkeypatch.setattr(predict, "_window_probs", predict._window_probs)  # the wrapper below undone after the test
    install_window_positions()
    src = SimpleNamespace(width=size, height=size)
    for window in (Window(800, 900, 700, 300), Window(2200, 2300, 300, 200)):  # over seams; over the edge
        image = big_image_region(
            scene, int(window.row_off) - margin, int(window.col_off) - margin,
            int(window.height) + 2 * margin, int(window.width) + 2 * margin, size,
        )  # fmt: skip
        expected = predict._window_probs(src, window, image, margin, real)
        found = predict._window_probs(src, window, image, margin, standin)
        assert found.shape == expected.shape == (5, image.shape[1], image.shape[2])
        np.testing.assert_allclose(found, expected, atol=1e-5)

    with pytest.raises(RuntimeError, match="predict_array no longer tiles"):  # a window nobody announced
        predict.predict_array(standin, np.zeros((3, 500, 500), np.uint8))
