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

    def forward(self, tiles: torch.Tensor, output_stride: int = 1) -> torch.Tensor:
        # at stride 2 the 2 x 2 blocks' means: still no context beyond a block, so tiles on the blocks' grid
        return torch.nn.functional.avg_pool2d(self.conv(tiles.float() / 255), output_stride)


@pytest.mark.parametrize("stride", [1, 2])
def test_the_stand_in_answers_the_recorded_outputs_where_each_tile_lies_and_nowhere_else(tmp_path, monkeypatch,
                                                                                        stride):
    rng = np.random.default_rng(0)
    scene = SimpleNamespace(image=rng.integers(0, 256, (3, SCENE, SCENE), dtype=np.uint8))
    size, margin = 2500, 32
    network = Pointwise()
    outputs = RecordedOutputs(record_outputs(network, scene, tmp_path / "outputs.npy", stride), size)
    assert outputs.maps.shape == (8, 5, SCENE // stride, SCENE // stride) and outputs.maps.dtype == np.float32
    config = DetectorConfig.from_dict({"classes": ["tree"]})
    recipe = Recipe(postprocess_stride=stride)  # a count detector post-processed at 2 reads maps at 2
    assert predict.probability_stride(config, recipe) == stride
    real = TrainedModel(network=network, config=config, recipe=recipe)
    standin = use_recorded_network(TrainedModel(network=network, config=config, recipe=recipe), outputs)
    assert isinstance(standin.network, RecordedNetwork) and real.network is network
    monkeypatch.setattr(predict, "_window_probs", predict._window_probs)  # the wrapper below undone after the test
    install_window_positions()
    src = SimpleNamespace(width=size, height=size)
    for window in (Window(800, 900, 700, 300), Window(2200, 2300, 300, 200)):  # over seams; over the edge
        image = big_image_region(
            scene, int(window.row_off) - margin, int(window.col_off) - margin,
            int(window.height) + 2 * margin, int(window.width) + 2 * margin, size,
        )  # fmt: skip
        expected = predict._window_probs(src, window, image, margin, real, stride=stride)
        found = predict._window_probs(src, window, image, margin, standin, stride=stride)
        assert found.shape == expected.shape == (5, image.shape[1] // stride, image.shape[2] // stride)
        np.testing.assert_allclose(found, expected, atol=1e-5)

    with pytest.raises(RuntimeError, match="predict_array no longer tiles"):  # a window nobody announced
        predict.predict_array(standin, np.zeros((3, 500, 500), np.uint8))
