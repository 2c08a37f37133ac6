"""Training samples: chips read by window from inside training areas, with targets rasterised from outlines.

A sample is a dict with fixed keys (TorchGeo style):

- ``image``: (3, T, T) uint8 RGB
- ``mask``: (T, T) int64 class index (0 = background, k = classes[k-1]), ``IGNORE`` outside training areas
- ``core``: (T, T) float32, 1 where a pixel lies deep inside an object (count detectors split touching
  objects by growing these cores), 0 elsewhere
- ``box``: (4, T, T) float32, the natural log of the width and height in chip pixels of the bounding box of
  the object a pixel belongs to, then the offset to that box's centre in box sides (0 outside objects): the
  targets of the box-size and centre heads (``bbox`` output)
- ``bounds``: the chip's (left, bottom, right, top) in the image CRS; ``crs``: the image CRS
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from shapely.strtree import STRtree

from .config import DetectorConfig, Recipe
from .raster_io import ImagePairSource, geometry_to_pixels, open_image, read_window, window_geometry, window_transform
from .samplers import area_chip_windows, select_chips

IGNORE = 255


@dataclass
class LabelledImage:
    """One image with what a user drew on it, all geometries in the image CRS.

    ``outlines`` pairs each object polygon with its class name; ``accuracy_areas`` are only used for scoring.
    ``source`` is one image, or an ``ImagePairSource`` (two dates: a change detector's training image, its
    geometries in the first date's CRS).
    """

    source: str | ImagePairSource
    training_areas: list[BaseGeometry]
    outlines: list[tuple[BaseGeometry, str]]
    accuracy_areas: list[BaseGeometry] = field(default_factory=list)


def outlines_in_areas(outlines: Sequence[tuple[BaseGeometry, str]],
                      areas: Sequence[BaseGeometry]) -> list[tuple[BaseGeometry, str]]:
    """The edge rule of training, the one place it is decided: an outline counts by its part inside the training
    areas (``rasterize_targets`` marks every pixel outside them unknown, ``IGNORE``, not background), so one that
    crosses an area's edge is clipped to the area, and one sharing no area with any of them (wholly outside, or
    only touching an edge) contributes nothing and is left out. The workspace's ``outlineUse`` says the same."""
    if not areas:
        return []
    region = unary_union(list(areas))
    return [(g, c) for g, c in outlines if g.intersection(region).area > 0]


def core_target(ids: np.ndarray, threshold: float) -> np.ndarray:
    """1 where a pixel's distance to its object's edge is >= ``threshold`` x that object's largest distance.

    Normalising per object makes cores scale-free (small cars and large roofs alike) and keeps a gap
    between the cores of touching objects, which is what the seeded split relies on.
    """
    out = np.zeros(ids.shape, np.float32)
    for i, sl in enumerate(ndimage.find_objects(ids), start=1):
        if sl is None:
            continue
        sl = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in sl)
        sub = ids[sl] == i
        d = ndimage.distance_transform_edt(sub)
        m = d.max()
        if m > 0:
            out[sl][sub & (d >= threshold * m)] = 1.0
    return out


def box_size_target(ids: np.ndarray, outlines_px: Sequence[tuple[BaseGeometry, int]]) -> np.ndarray:
    """(4, H, W): log width and log height of the whole outline's bounding box (not of the part inside the
    chip) at each of its pixels, then the offset ``(u, v)`` from the pixel's centre to that box's centre in
    box widths and heights (scale-free, like the sides' logs under resampling); 0 elsewhere. A network with a
    centre head learns the offsets too: where the user's box is centred, not where the visible region is."""
    sides = np.zeros((len(outlines_px) + 1, 4), np.float32)
    sides[0, :2] = 1.0  # background: any finite value (zeroed below)
    for i, (g, _) in enumerate(outlines_px, start=1):
        x0, y0, x1, y1 = g.bounds
        sides[i] = max(x1 - x0, 1.0), max(y1 - y0, 1.0), (x0 + x1) / 2, (y0 + y1) / 2
    per_pixel = sides[ids]  # (H, W, 4): width, height, centre x, centre y
    ys, xs = np.indices(ids.shape, dtype=np.float32)
    out = np.stack([np.log(per_pixel[..., 0]), np.log(per_pixel[..., 1]),
                    (per_pixel[..., 2] - (xs + 0.5)) / per_pixel[..., 0],
                    (per_pixel[..., 3] - (ys + 0.5)) / per_pixel[..., 1]])
    out[:, ids == 0] = 0.0
    return out.astype(np.float32)


def rasterize_targets(outlines_px: Sequence[tuple[BaseGeometry, int]], areas_px: Sequence[BaseGeometry],
                      shape: tuple[int, int], core_threshold: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class mask (IGNORE outside ``areas_px``), core map and box-size target for pixel-space outlines in a
    chip grid."""
    h, w = shape
    mask = np.zeros((h, w), np.int64)
    ids = np.zeros((h, w), np.int32)
    if outlines_px:
        mask = rasterize(((g, c) for g, c in outlines_px), out_shape=(h, w), dtype="int32").astype(np.int64)
        ids = rasterize(((g, i + 1) for i, (g, _) in enumerate(outlines_px)), out_shape=(h, w), dtype="int32")
    core = core_target(ids, core_threshold)
    sizes = box_size_target(ids, outlines_px)
    inside = np.zeros((h, w), bool)
    if areas_px:
        inside = rasterize(((a, 1) for a in areas_px), out_shape=(h, w), dtype="uint8").astype(bool)
    mask[~inside] = IGNORE
    return mask, core, sizes


def resample_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(3, h, w) uint8 resampled to ``size`` (bilinear; antialiased when shrinking); unchanged if it fits."""
    if image.shape[-2:] == tuple(size):
        return image
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(image).float()[None]
    shrink = size[0] < image.shape[-2] or size[1] < image.shape[-1]
    out = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=shrink)
    return out[0].round_().clamp_(0, 255).to(torch.uint8).numpy()


def build_samples(images: Sequence[LabelledImage], config: DetectorConfig, recipe: Recipe,
                  rng: np.random.Generator) -> list[dict[str, Any]]:
    """Read every selected chip once and rasterise its targets.

    Candidate chips cover each training area; ``config.background_sample_ratio`` caps the share of chips
    without objects and ``recipe.max_chips`` their number (chips are the unit of caching, not of steps).
    """
    class_index = {c: i + 1 for i, c in enumerate(config.classes)}
    tile = config.tile_size
    # scale matching: a chip covers ``tile / scale`` image pixels, resampled to ``tile``
    scale = recipe.scale if recipe.scale > 0 else 1.0
    native = max(8, int(round(tile / scale)))
    candidates: list[tuple[int, Window, bool]] = []
    prepared = []
    for n, item in enumerate(images):
        with open_image(item.source) as src:
            transform, crs = src.transform, src.crs
        outlines = [(g, class_index[c]) for g, c in item.outlines if c in class_index and not g.is_empty]
        tree = STRtree([g for g, _ in outlines]) if outlines else None
        prepared.append((transform, crs, outlines, tree, item))
        for area in item.training_areas:
            area_px = geometry_to_pixels(area, transform)
            wins = area_chip_windows(area_px, native, rng)
            # small areas get several jittered framings: more distinct chips for the same labels
            passes = max(1, min(4, recipe.max_chips // max(1, len(item.training_areas) * len(wins))))
            for _ in range(passes - 1):
                wins += area_chip_windows(area_px, native, rng)
            for win in wins:
                foot = window_geometry(win, transform).intersection(area)
                hit = tree is not None and any(
                    outlines[j][0].intersects(foot) for j in tree.query(foot))
                candidates.append((n, win, bool(hit)))
    keep = select_chips([c[2] for c in candidates], config.background_sample_ratio, recipe.max_chips, rng)
    samples: list[dict[str, Any]] = []
    handles: dict[int, Any] = {}
    try:
        for k in keep:
            n, win, _ = candidates[k]
            transform, crs, outlines, tree, item = prepared[n]
            if n not in handles:
                handles[n] = open_image(item.source)
            image = resample_image(read_window(handles[n], win), (tile, tile))
            foot = window_geometry(win, transform)
            wt = window_transform(transform, win) @ Affine.scale(win.width / tile, win.height / tile)
            near = [outlines[j] for j in tree.query(foot)] if tree is not None else []
            outl_px = [(geometry_to_pixels(g, wt), c) for g, c in near]
            areas_px = [geometry_to_pixels(a, wt) for a in item.training_areas if a.intersects(foot)]
            areas_px = [a.intersection(box(-1, -1, tile + 1, tile + 1)) for a in areas_px]
            mask, core, sizes = rasterize_targets(outl_px, areas_px, (tile, tile), recipe.core_threshold)
            samples.append({"image": image, "mask": mask, "core": core, "box": sizes, "bounds": foot.bounds,
                            "crs": crs})
    finally:
        for h in handles.values():
            h.close()
    return samples
