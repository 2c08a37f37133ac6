"""A stand-in for the detector's network that costs nothing: the real network's outputs, recorded once on the
generated scene the detection benches tile over their large image, returned for each tile from where that
tile lies in the image.

The large image (``bench/detect_platform.py``) is the scene in its eight orientations, so the real network's
logits over the whole image are, up to the context at the copies' seams, its logits over each orientation put
where that orientation's copies lie. ``record_outputs`` runs the trained network once over each orientation
(with the neighbouring copies around it as context) and saves the eight logit maps; ``RecordedNetwork``, an
``nn.Module`` with the network's interface, answers a batch of tiles with the matching parts of those maps.
The prediction code around it (tiling, softmax, blending, instances, polygons) runs unchanged, on outputs the
real network gives on the same pixels.

A tile carries no position, so the stand-in is told each window's origin: ``install_window_positions`` wraps
``workers.ml.predict._window_probs`` (the one place a window's image meets the network) to announce the
window, and the stand-in lays out its tiles as ``predict_array`` does on a CPU. A window predicted another way,
or tiles of another shape than announced, raise: the stand-in never answers with outputs of another place.

Bench-only: the ceiling bench's worker (``bench/ceiling_worker.py``) puts it in place of the network in each
pool process; nothing in the platform knows about it.
"""

from __future__ import annotations

import time
from collections import deque
from pathlib import Path

import numpy as np
import torch
from torch import nn

from bench.detect_platform import SCENE, big_image_region, scene_copies, variant_of_copy
from workers.ml import predict
from workers.ml.config import Recipe
from workers.ml.trained import TrainedModel

CONTEXT = 64  # pixels of the neighbouring copies around each orientation when recording


def record_outputs(network: nn.Module, scene, path: Path, stride: int = 1) -> Path:
    """Run ``network`` over each of the scene's eight orientations as the large image holds them, with
    ``CONTEXT`` pixels of the neighbouring copies around, and save the logits at ``stride`` (the network's
    ``output_stride``: what ``predict.probability_stride`` asks of it), (8, outputs, SCENE / stride, SCENE /
    stride) float32, to ``path`` (.npy), with the logits of an empty (zero) image beside it."""
    network.eval()
    maps = []
    margin = CONTEXT // stride
    with torch.inference_mode():
        for k in range(8):
            i = 1  # a copy with neighbours on every side: row 1, the first column >= 1 with orientation k
            j = next(j for j in range(1, 9) if variant_of_copy(i, j) == k)
            side = SCENE + 2 * CONTEXT
            pixels = big_image_region(scene, i * SCENE - CONTEXT, j * SCENE - CONTEXT, side, side, size=10 * SCENE)
            logits = network(torch.from_numpy(pixels)[None], output_stride=stride).float()[0]
            maps.append(logits[:, margin:-margin, margin:-margin].numpy())
        zeros = torch.zeros((1, 3, 128, 128), dtype=torch.uint8)
        empty = network(zeros, output_stride=stride).float()[0, :, 64 // stride, 64 // stride].numpy()
    np.save(path, np.stack(maps))
    np.save(_empty_path(path), empty)
    return path


def _empty_path(path: Path) -> Path:
    return path.with_name(path.stem + "-empty.npy")


class RecordedOutputs:
    """The recorded logits of a ``size`` x ``size`` large image, read from the file by memory map (the pool
    processes share one copy in the page cache); ``stride``: the logits' (recorded maps SCENE / stride a side)."""

    def __init__(self, path: Path, size: int):
        self.maps = np.load(path, mmap_mode="r")
        self.empty = np.load(_empty_path(path)).astype(np.float32)
        self.size = size
        self.stride = SCENE // int(self.maps.shape[-1])

    @property
    def channels(self) -> int:
        return int(self.maps.shape[1])

    def logits(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """(channels, height / stride, width / stride) float32 logits of the region at (row, col) of the large
        image (image pixels, multiples of the stride); beyond its edge, the network's logits on zeros."""
        s = self.stride
        if (row % s, col % s, height % s, width % s) != (0, 0, 0, 0):
            raise RuntimeError(f"a region at ({row}, {col}) of {height} x {width} is not on the maps' {s}-pixel grid")
        out = np.empty((self.channels, height // s, width // s), np.float32)
        if row < 0 or col < 0 or row + height > self.size or col + width > self.size:
            out[:] = self.empty[:, None, None]
        for k, (rows, cols), (src_rows, src_cols) in scene_copies(row, col, height, width, self.size):
            out[:, _on_grid(rows, s), _on_grid(cols, s)] = self.maps[k, :, _on_grid(src_rows, s), _on_grid(src_cols, s)]
        return out


def _on_grid(pixels: slice, stride: int) -> slice:
    """A slice of image pixels as one of the maps' pixels at ``stride`` (its ends on the grid: the copies'
    corners are multiples of SCENE and the large image's side of the stride)."""
    return slice(pixels.start // stride, -(-pixels.stop // stride))


class RecordedNetwork(nn.Module):
    """The detector network's interface (``n_classes``, ``box_head``, ``box_channels``, ``forward`` on uint8
    tiles) answered from ``RecordedOutputs`` for the tiles of the announced window. ``seconds`` counts the
    time it takes."""

    def __init__(self, outputs: RecordedOutputs, n_classes: int, box_channels: int):
        super().__init__()
        self.outputs, self.n_classes = outputs, n_classes
        self.box_head, self.box_channels = box_channels > 0, box_channels
        self.seconds = 0.0
        self._tiles: deque[tuple[int, int, int, int]] = deque()  # in the large image, in the window
        self._shape = (0, 0)
        self._window = (0, 0)

    def expect_window(self, row: int, col: int, height: int, width: int, recipe: Recipe) -> None:
        """The next window predicted: its image (height x width) starts at (row, col) of the large image.
        Lays out its tiles as ``predict.predict_array`` does on a CPU."""
        if abs(recipe.scale - 1.0) > 1e-6:
            raise RuntimeError("the recorded network answers unscaled tiles only")
        self._shape, starts = predict.tile_layout(height, width, recipe, cuda=False, stride=self.outputs.stride)
        self._tiles = deque((row + r, col + c, r, c) for r, c in starts)
        self._window = (height, width)

    @property
    def tiles_left(self) -> int:
        return len(self._tiles)

    def forward(self, tiles: torch.Tensor, output_stride: int = 1) -> torch.Tensor:
        start = time.perf_counter()
        if tuple(tiles.shape[-2:]) != self._shape or len(tiles) > len(self._tiles):
            raise RuntimeError(
                f"tiles {tuple(tiles.shape)} asked for, {len(self._tiles)} of {self._shape} announced: "
                "predict_array no longer tiles as the stand-in expects"
            )
        if output_stride != self.outputs.stride:
            raise RuntimeError(f"logits at stride {output_stride} asked for, recorded at {self.outputs.stride}")
        th, tw = self._shape
        s = self.outputs.stride
        out = np.empty((len(tiles), self.outputs.channels, th // s, tw // s), np.float32)
        height, width = self._window
        for b in range(len(tiles)):
            row, col, r, c = self._tiles.popleft()
            out[b] = self.outputs.logits(row, col, th, tw)
            # where the tile runs past the window, predict_array gave the network zeros (padding), not the image
            out[b, :, max(0, -(-(height - r) // s)) :] = self.outputs.empty[:, None, None]
            out[b, :, :, max(0, -(-(width - c) // s)) :] = self.outputs.empty[:, None, None]
        self.seconds += time.perf_counter() - start
        return torch.from_numpy(out)


def use_recorded_network(model: TrainedModel, outputs: RecordedOutputs) -> TrainedModel:
    """Put the stand-in in place of ``model``'s network (on the CPU); returns ``model``."""
    net = model.network
    if isinstance(net, RecordedNetwork):
        return model
    expected = net.n_classes + 2 + net.box_channels
    if outputs.channels != expected:
        raise ValueError(f"recorded {outputs.channels} outputs, the model has {expected}")
    model.network = RecordedNetwork(outputs, net.n_classes, net.box_channels)
    model.device = "cpu"
    return model


def install_window_positions() -> None:
    """Wrap ``workers.ml.predict._window_probs`` so each window is announced to a stand-in network."""
    original = predict._window_probs
    if getattr(original, "announces_windows", False):
        return

    def _window_probs(src, window, image, margin, model, tiles=None, stride=1):
        if isinstance(model.network, RecordedNetwork):
            row, col = int(window.row_off) - margin, int(window.col_off) - margin
            model.network.expect_window(row, col, image.shape[1], image.shape[2], model.recipe)
            probs = original(src, window, image, margin, model, tiles, stride)
            if model.network.tiles_left:
                raise RuntimeError(f"{model.network.tiles_left} tiles announced were never asked for")
            return probs
        return original(src, window, image, margin, model, tiles, stride)

    _window_probs.announces_windows = True
    predict._window_probs = _window_probs
