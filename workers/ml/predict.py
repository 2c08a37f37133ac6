"""Prediction over any window of any size: overlapping tiles, batched, blended with a ramp so tile borders
(where the network sees little context) count less; then instances and polygons. With ``Recipe.tta`` > 1
each tile is also predicted mirrored and turned, and the maps, taken back to the tile, averaged
(test-time augmentation).

On CUDA the tiles go through pinned memory with bf16 autocast, and ``predict_windows`` reads the next
window in a background thread while the model runs on the current one. Given a ``TileRunner`` (the GPU
worker's ``inference_server.ServerTiles``), a window's tiles are predicted by another process that batches
them with other windows' tiles; cutting and blending stay here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from affine import Affine
from rasterio.io import DatasetReader
from rasterio.windows import Window
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from .change import check_channels
from .config import DetectorConfig, Recipe
from .dihedral import TTA_TRANSFORMS, dihedral, undo_dihedral, undo_dihedral_sizes
from .grid import GridCell
from .models import Detector
from .postprocess import (
    Detection,
    at_stride,
    instance_labels,
    labels_to_detections,
    points_on_surface_in,
    recipe_at_stride,
)
from .raster_io import geometry_window, read_window, window_geometry, window_transform
from .trained import TrainedModel


class TileRunner(Protocol):
    """Predicts a window's tiles somewhere else than with the model in this process (an inference server).

    ``device_type`` is where the network runs ("cuda": the recipe's tile side, "cpu": at most
    ``CPU_MAX_TILE``), ``tile`` a side to use instead of the recipe's (None: the recipe's)."""

    @property
    def device_type(self) -> str: ...

    @property
    def tile(self) -> int | None: ...

    def prepare(self, model: TrainedModel) -> None:
        """Make ``model`` ready where the tiles run (once per model)."""

    def tile_probs(self, model: TrainedModel, tiles: np.ndarray, stride: int = 1) -> np.ndarray:
        """(n, c, h, w) uint8 tiles -> (n, n_out, h / stride, w / stride) float32, as ``_tta_probs`` computes
        them."""


def _ramp(th: int, tw: int, overlap: float) -> np.ndarray:
    if overlap <= 0:
        return np.ones((th, tw), np.float32)

    def r(n: int) -> np.ndarray:
        x = np.arange(n, dtype=np.float32) + 0.5
        return np.clip(np.minimum(x, n - x) / overlap, 0.05, 1.0)

    return np.outer(r(th), r(tw))


# On CPU a tile's widest activations (96 channels at stride 2: 14 MB at 384 px, 32 MB at 576 px) should stay
# in the last-level cache. On the 2-core bench machine (32 MB L3 shared with other processes) 3x3 tiles of
# 384 px ran a 1088 px window 10-25% faster than 2x2 tiles of 576 px (the same pixel count) whenever the
# cache was contended, and up to ~10% slower when it was not; smaller tiles are the robust choice, so CPU
# tiles stop at this side whatever ``recipe.predict_tile`` (sized for GPUs) says.
CPU_MAX_TILE = 384

# The side of the windows a whole image is streamed in (the CLI; detection grid cells default to the same):
# each window is read with a margin of context on every side, so larger windows waste less, while a
# window's probabilities (~50 MB at 2048 px) must fit in memory.
WINDOW_SIDE = 2048


def _axis_tiles(length: int, tile: int, overlap: int, limit: int | None = None) -> tuple[int, list[int]]:
    """Tile length (multiple of 32, at most ``limit``, by default 1.25 x ``tile``) and starts covering
    ``length`` with the least model work: the network is fully convolutional, so tiles are sized to the
    window instead of padding it up to a fixed grid."""
    best: tuple[int, int] | None = None
    limit = max(64, int(tile * 1.25) // 32 * 32) if limit is None else max(64, limit // 32 * 32)
    for n in range(1, length // 32 + 2):
        t = max(64, -(-(length + (n - 1) * overlap) // n // 32) * 32)
        t = max(t, -(-(length + (n - 1) * overlap) // (32 * n)) * 32)
        if t > limit and n * 32 < length:
            continue
        if best is None or n * t < best[0] * best[1]:
            best = (n, t)
        if t <= tile // 2:
            break
    n, t = best if best is not None else (1, max(64, -(-length // 32) * 32))
    if n == 1:
        return t, [0]
    stride = (length - t) / (n - 1)
    return t, [int(round(i * stride)) for i in range(n)]


def probability_stride(config: DetectorConfig, recipe: Recipe) -> int:
    """The stride of the maps a detector's post-processing reads: a count detector post-processed at the
    decoders' own stride (``Detector.HEAD_STRIDE``) on unscaled tiles reads the network's output there, never
    upsampled (a quarter of the pixels to blend and to hand from an inference server); every other detector,
    full-resolution maps."""
    unscaled = recipe.scale <= 0 or abs(recipe.scale - 1.0) <= 1e-6
    if config.detection_type == "count" and recipe.postprocess_stride == Detector.HEAD_STRIDE and unscaled:
        return Detector.HEAD_STRIDE
    return 1


def _upsampled_block_means(logits: torch.Tensor) -> torch.Tensor:
    """The 2 x 2 block means of ``logits`` (N, C, h, w) upsampled bilinearly to twice their side, as
    ``Detector.forward`` upsamples them (align_corners=False), computed without upsampling: a [1/8, 3/4, 1/8]
    filter along each axis, edges repeated. For the linear outputs (box sizes, centre offsets)."""
    x = F.pad(logits, (1, 1, 1, 1), mode="replicate")
    x = (x[..., :-2, :] + x[..., 2:, :]).mul_(0.125).add_(x[..., 1:-1, :], alpha=0.75)
    return (x[..., :-2] + x[..., 2:]).mul_(0.125).add_(x[..., 1:-1], alpha=0.75)


def _upsampled_block_mean_probabilities(logits: torch.Tensor, n_classes: int) -> torch.Tensor:
    """(N, n_classes + 2, h, w) logits (background/classes, core) -> the 2 x 2 block means of the probabilities
    of the logits upsampled bilinearly to twice their side (softmax, sigmoid), computed at the blocks: each
    block's four upsampled values are 3/4 of its own logit and 1/4 of a neighbour's along each axis (edges
    repeated). The network is trained on those full-resolution probabilities; the softmax of the blocks'
    mean logits instead cost F1 on spacenet/atlanta (docs/experiments.md, "probabilities at the head's
    stride"). With one class the softmax is the sigmoid of the class's logit less the background's: half the
    values to upsample and squash."""
    binary = n_classes == 1
    x = torch.cat([logits[:, 1:2] - logits[:, :1], logits[:, 2:]], 1) if binary else logits
    x = F.pad(x, (1, 1, 1, 1), mode="replicate")
    centre = x[..., 1:-1, :]
    total: torch.Tensor | None = None
    for row_neighbour in (x[..., :-2, :], x[..., 2:, :]):
        rows = torch.lerp(centre, row_neighbour, 0.25)
        for col_neighbour in (rows[..., :-2], rows[..., 2:]):
            up = torch.lerp(rows[..., 1:-1], col_neighbour, 0.25)
            if binary:
                probs = up.sigmoid_()
            else:
                probs = torch.cat([up[:, : n_classes + 1].softmax(1), up[:, n_classes + 1 :].sigmoid()], 1)
            total = probs if total is None else total.add_(probs)
    assert total is not None
    total.mul_(0.25)
    return torch.cat([1.0 - total[:, :1], total], 1) if binary else total


def _network_probs(net: torch.nn.Module, batch: torch.Tensor, scale: float, stride: int = 1) -> torch.Tensor:
    """(N, 3, h, w) uint8 tiles -> (N, n_classes + 2 + box channels, h / stride, w / stride) float32:
    background/class probabilities, the core probability, then (with a box-size head) log box width and height
    in the maps' pixels and (with a centre head) the offsets to the box's centre in box sides (scale-free).
    ``stride`` 1 or, on unscaled tiles, the head's own (``probability_stride``)."""
    h, w = batch.shape[-2:]
    if abs(scale - 1.0) > 1e-6:
        if stride != 1:
            raise ValueError("maps at the head's stride are for unscaled tiles only")
        size = (max(32, round(h * scale / 32) * 32), max(32, round(w * scale / 32) * 32))
        up = F.interpolate(batch.float(), size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
        logits = net.decode(net.encode(up.round_().clamp_(0, 255)), (h, w)).float()
    elif stride == 1:
        logits = net(batch).float()
    else:  # the full-resolution maps' block means, never upsampled
        logits = net(batch, output_stride=stride).float()
        k = net.n_classes + 2
        parts = [_upsampled_block_mean_probabilities(logits[:, :k], net.n_classes)]
        if net.box_channels:  # sizes in the network's pixels -> the blocks'
            boxes = _upsampled_block_means(logits[:, k:])
            parts += [boxes[:, :2] - float(np.log(stride)), boxes[:, 2:]]
        return torch.cat(parts, 1)
    k = net.n_classes + 1
    parts = [logits[:, :k].softmax(1), logits[:, k : k + 1].sigmoid()]
    if net.box_channels:  # sizes in the network's pixels -> the image's
        parts.append(logits[:, k + 1 : k + 3] - float(np.log(scale)))
        parts.append(logits[:, k + 3 :])
    return torch.cat(parts, 1)


def _tta_probs(
    net: torch.nn.Module,
    batch: torch.Tensor,
    scale: float,
    transforms: Sequence[tuple[int, bool]],
    together: bool = False,
    stride: int = 1,
) -> torch.Tensor:
    """``_network_probs`` averaged over the dihedral ``transforms`` of the tiles (test-time augmentation):
    each transformed copy's maps are taken back to the tiles' pixels (box widths and heights swapped back
    after a quarter turn) before they are averaged. ``together`` runs the copies of one shape as one batch
    (GPU); otherwise one after the other (CPU, where larger batches ran slower). The maps are at ``stride``
    (``_network_probs``)."""
    if len(transforms) == 1 and transforms[0] == (0, False):
        return _network_probs(net, batch, scale, stride)
    n = net.n_classes + 2
    copies = [dihedral(batch, k, flip).contiguous() for k, flip in transforms]
    if together:
        outs: list[torch.Tensor] = list(copies)
        for shape in dict.fromkeys(c.shape for c in copies):
            idx = [i for i, c in enumerate(copies) if c.shape == shape]
            found = _network_probs(net, torch.cat([copies[i] for i in idx]), scale, stride).split(batch.shape[0])
            for i, out in zip(idx, found, strict=True):
                outs[i] = out
    else:
        outs = [_network_probs(net, c, scale, stride) for c in copies]
    h, w = batch.shape[-2:]
    total = torch.zeros(
        (batch.shape[0], outs[0].shape[1], h // stride, w // stride), dtype=torch.float32, device=outs[0].device
    )
    for out, (k, flip) in zip(outs, transforms, strict=True):
        total[:, :n] += undo_dihedral(out[:, :n], k, flip)
        if out.shape[1] > n:
            total[:, n:] += undo_dihedral_sizes(out[:, n:], k, flip)
    return total.div_(len(transforms))


def tile_layout(height: int, width: int, recipe: Recipe, cuda: bool, tile: int | None = None,
                stride: int = 1) -> tuple[tuple[int, int], list[tuple[int, int]]]:
    """The tiles ``predict_array`` cuts a ``height`` x ``width`` image into: their shape and their starts (row,
    column). ``tile``: a side to use instead of the recipe's (e.g. a GPU server's). With ``stride`` 2 every
    start is even, so each tile's maps at the head's stride fall on the image's 2 x 2 blocks."""
    tile, limit = tile or recipe.predict_tile, None
    if not cuda and tile > CPU_MAX_TILE:
        tile = limit = CPU_MAX_TILE
    # scale matching: tiles are cut from the image's pixels and resampled by the model's scale, so the
    # network sees objects at the size it was trained at; its output is taken back to the image's pixels
    scale = recipe.scale if recipe.scale > 0 else 1.0
    if abs(scale - 1.0) > 1e-6:
        tile = max(64, int(tile / scale) // 32 * 32)
        limit = None if limit is None else max(64, int(limit / scale) // 32 * 32)
    # with even sides (tiles are multiples of 32) the last start is even too; rounding the others down keeps
    # the image covered, as neighbouring tiles overlap or share a start's parity
    th, rows = _axis_tiles(height + height % stride, tile, recipe.overlap, limit)
    tw, cols = _axis_tiles(width + width % stride, tile, recipe.overlap, limit)
    return (th, tw), [(r - r % stride, c - c % stride) for r in rows for c in cols]


@torch.inference_mode()
def predict_array(model: TrainedModel, image: np.ndarray, tiles: TileRunner | None = None,
                  stride: int = 1) -> np.ndarray:
    """(3, H, W) uint8 -> (n_classes + 2 + box channels, H, W) float32: background/class probabilities, the
    core probability, then (networks with a box-size head) the log width and log height of the object's box in
    image pixels and (with a centre head) the offset (u, v) to its centre in box sides. ``tiles``: where the
    tiles are predicted (None: by the model here). With ``stride`` 2 (``probability_stride``) the maps are
    at the head's stride, (n, ceil(H / 2), ceil(W / 2)), sizes in those pixels, never computed at full
    resolution."""
    net = model.network
    dev = torch.device(model.device)
    check_channels(model.recipe.dates, image.shape[0])  # a pair for a change model, one image otherwise
    strides = sorted({1, probability_stride(model.config, model.recipe)})
    if stride not in strides:
        raise ValueError(f"maps at stride {stride} asked for; this model's are at {' or '.join(map(str, strides))}")
    _, h, w = image.shape
    overlap = model.recipe.overlap
    cuda = (tiles.device_type if tiles is not None else dev.type) == "cuda"
    (th, tw), starts = tile_layout(h, w, model.recipe, cuda, tiles.tile if tiles is not None else None, stride)
    scale = model.recipe.scale if model.recipe.scale > 0 else 1.0
    ph, pw = max(h + h % stride, th), max(w + w % stride, tw)
    if (ph, pw) != (h, w):
        image = np.pad(image, ((0, 0), (0, ph - h), (0, pw - w)))
    n_out = net.n_classes + 2 + net.box_channels
    # blended in torch, in place: no temporaries per tile (same float32 arithmetic as numpy's ``+= p * ramp``)
    acc = torch.zeros((n_out, ph // stride, pw // stride), dtype=torch.float32)
    wsum = torch.zeros((ph // stride, pw // stride), dtype=torch.float32)
    ramp = torch.from_numpy(_ramp(th // stride, tw // stride, overlap / stride))
    sh, sw = th // stride, tw // stride
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if cuda else contextlib.nullcontext()
    # on CPU one tile at a time: the encoder is memory-bandwidth bound and larger batches ran slower
    bs = max(1, model.recipe.batch_tiles) if cuda else 1
    transforms = TTA_TRANSFORMS[model.recipe.tta]
    if tiles is not None:  # every tile of the window in one request: the server makes the batches
        tiles.prepare(model)
        found = tiles.tile_probs(model, np.stack([image[:, r : r + th, c : c + tw] for r, c in starts]), stride)
        for (r, c), p in zip(starts, torch.from_numpy(found), strict=True):
            r, c = r // stride, c // stride
            acc[:, r : r + sh, c : c + sw].add_(p.mul_(ramp))
            wsum[r : r + sh, c : c + sw].add_(ramp)
        starts = []
    for i in range(0, len(starts), bs):
        group = starts[i : i + bs]
        batch = torch.from_numpy(np.stack([image[:, r : r + th, c : c + tw] for r, c in group]))
        if cuda:
            batch = batch.pin_memory().to(dev, non_blocking=True)
        with amp:
            probs = _tta_probs(net, batch, scale, transforms, together=cuda, stride=stride).cpu()
        for (r, c), p in zip(group, probs, strict=True):
            r, c = r // stride, c // stride
            acc[:, r : r + sh, c : c + sw].add_(p.mul_(ramp))
            wsum[r : r + sh, c : c + sw].add_(ramp)
    acc.div_(wsum.clamp_(min=1e-6))
    return acc.numpy()[:, : -(-h // stride), : -(-w // stride)]


def _window_probs(src: DatasetReader, window: Window, image: np.ndarray, margin: int,
                  model: TrainedModel, tiles: TileRunner | None = None, stride: int = 1) -> np.ndarray:
    """The network's probabilities over ``window`` read with ``margin``, at ``stride``; pixels beyond the
    raster edge (read as zeros) are background (at stride 2, the blocks wholly beyond it)."""
    probs = predict_array(model, image, tiles, stride)
    r0, c0 = int(window.row_off) - margin, int(window.col_off) - margin
    rr = slice(max(0, -r0) // stride, max(0, min(probs.shape[1], -(-(src.height - r0) // stride))))
    cc = slice(max(0, -c0) // stride, max(0, min(probs.shape[2], -(-(src.width - c0) // stride))))
    if (rr.start, rr.stop, cc.start, cc.stop) == (0, probs.shape[1], 0, probs.shape[2]):
        return probs  # the window lies inside the raster (most cells): nothing to mask
    outside = np.ones(probs.shape[1:], bool)
    outside[rr, cc] = False
    probs[0][outside] = 1.0
    probs[1:][:, outside] = 0.0
    return probs


def _decode(probs: np.ndarray, src: DatasetReader, window: Window, margin: int, model: TrainedModel,
            recipe: Recipe, probs_stride: int = 1) -> list[Detection]:
    """Instances and polygons of one window's probabilities (at ``probs_stride``), post-processed as
    ``recipe`` says."""
    big = Window(window.col_off - margin, window.row_off - margin, window.width + 2 * margin,
                 window.height + 2 * margin)
    n = model.network.n_classes + 2
    stride = recipe.postprocess_stride if model.config.detection_type == "count" else 1
    if probs_stride == stride:
        maps, recipe = probs, recipe_at_stride(recipe, stride)
    elif probs_stride == 1:
        maps, recipe = at_stride(probs, n, recipe, stride)
    else:
        raise ValueError(f"maps at stride {probs_stride} cannot be post-processed at stride {stride}")
    # the box map: sizes, and the centre offsets when the recipe reads them (a model with a centre head
    # evaluated with ``centre_head=False`` boxes about its regions' centres: how the head is measured)
    sizes = maps[n : n + (4 if recipe.centre_head else 2)] if maps.shape[0] > n and recipe.regress_boxes else None
    probs = maps[:n]
    boxes = maps[n:] if maps.shape[0] >= n + 4 else None
    labels, _ = instance_labels(probs, model.config.detection_type, recipe, boxes)
    keep = box(margin / stride, margin / stride, (margin + window.width) / stride, (margin + window.height) / stride)
    transform = window_transform(src.transform, big) @ Affine.scale(stride)
    return labels_to_detections(labels, probs, transform, model.config, recipe, keep=keep, box_sizes=sizes)


def _predict_read(model: TrainedModel, src: DatasetReader, window: Window, image: np.ndarray,
                  margin: int, tiles: TileRunner | None = None) -> list[Detection]:
    stride = probability_stride(model.config, model.recipe)
    probs = _window_probs(src, window, image, margin, model, tiles, stride)
    return _decode(probs, src, window, margin, model, model.recipe, stride)


def _margin(model: TrainedModel) -> int:
    return int(model.recipe.overlap)


def _read_padded(src: DatasetReader, window: Window, margin: int) -> np.ndarray:
    return read_window(src, Window(window.col_off - margin, window.row_off - margin,
                                   window.width + 2 * margin, window.height + 2 * margin))


def predict_window(model: TrainedModel, src: DatasetReader, window: Window,
                   tiles: TileRunner | None = None) -> list[Detection]:
    """Detect objects in ``window`` of an open raster; polygons in the image CRS.

    The window is read with a margin so objects on its edge are seen whole; an object is returned by the
    window that holds its representative point, so a grid of windows reports each object exactly once.
    """
    m = _margin(model)
    return _predict_read(model, src, window, _read_padded(src, window, m), m, tiles)


def detect_in_cell(
    model: TrainedModel, src: DatasetReader, cell: GridCell, margin: int, region: BaseGeometry | None = None,
    tiles: TileRunner | None = None,
) -> list[Detection]:
    """The objects one cell reports: predicted over its window grown by ``margin``, kept when their
    representative point lies in the cell's window (and in ``region``, image CRS, when given).

    The rule that makes cells independent: each object is owned by exactly one cell, and with a margin
    at least the largest object's size its owner saw it whole.
    """
    owned = window_geometry(cell.window, src.transform)
    if region is not None:
        owned = owned.intersection(region)
    found = predict_window(model, src, cell.padded(margin, src.width, src.height), tiles)
    if not found:
        return []
    inside = points_on_surface_in(np.array([d.geometry for d in found], dtype=object), owned)
    return [d for d, here in zip(found, inside, strict=True) if here]


def predict_areas(model: TrainedModel, src: DatasetReader, areas: Sequence[BaseGeometry]) -> list[Detection]:
    """The objects touching any of ``areas`` (image CRS), each once: overlapping areas are merged first, so
    an object inside two of them is neither predicted nor reported twice."""
    return predict_areas_post_processed(model, src, areas, [model.recipe])[0]


def predict_areas_post_processed(model: TrainedModel, src: DatasetReader, areas: Sequence[BaseGeometry],
                                 recipes: Sequence[Recipe]) -> list[list[Detection]]:
    """``predict_areas`` once per recipe, running the network once: the recipes may differ only in
    post-processing (thresholds, seeds, sizes), as the candidates of the post-processing calibration do."""
    found: list[list[Detection]] = [[] for _ in recipes]
    if not areas:
        return found
    merged = unary_union(list(areas))
    m = _margin(model)
    # maps every recipe can read, and the model can give
    stride = min(probability_stride(model.config, r) for r in (model.recipe, *recipes))
    for part in getattr(merged, "geoms", [merged]):
        window = geometry_window(part, src.transform).intersection(Window(0, 0, src.width, src.height))
        probs = _window_probs(src, window, _read_padded(src, window, m), m, model, stride=stride)
        for out, recipe in zip(found, recipes, strict=True):
            out += [d for d in _decode(probs, src, window, m, model, recipe, stride) if d.geometry.intersects(part)]
    return found


def predict_windows(model: TrainedModel, src: DatasetReader, windows: Iterable[Window],
                    tiles: TileRunner | None = None) -> Iterator[tuple[Window, list[Detection]]]:
    """``predict_window`` over many windows, reading the next window while the current one is predicted.

    Vectorising the previous window in a second thread while the model runs the next was tried: on 2 cores
    it ran ~8% slower (the model already uses both), so vectorising stays in line."""
    m = _margin(model)
    it = iter(windows)
    with ThreadPoolExecutor(max_workers=1) as pool:
        current = next(it, None)
        fut = pool.submit(_read_padded, src, current, m) if current is not None else None
        while current is not None:
            image = fut.result()
            nxt = next(it, None)
            fut = pool.submit(_read_padded, src, nxt, m) if nxt is not None else None
            yield current, _predict_read(model, src, current, image, m, tiles)
            current = nxt
