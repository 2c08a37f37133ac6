"""Per-pixel probabilities -> object instances -> polygons (one shapely ``Polygon`` per object, never a
MultiPolygon), in the image CRS and as lon/lat GeoJSON.

Count detectors grow *seeds* (connected regions of the predicted core map) over the predicted foreground,
each foreground pixel going to its nearest seed: touching objects whose cores are apart come out separate.
Segmentation detectors return the connected regions of each class.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from affine import Affine
from rasterio.features import shapes
from scipy import ndimage
from shapely import make_valid
from shapely.geometry import Polygon, box, mapping, shape

from .config import DetectorConfig, Recipe
from .raster_io import image_crs_to_lonlat, pixels_to_geometry


@dataclass
class Detection:
    """One object: a Polygon in the image CRS, its class name and a score in [0, 1]."""

    geometry: Polygon
    class_name: str
    score: float


def instance_labels(probs: np.ndarray, detection_type: str, recipe: Recipe) -> tuple[np.ndarray, int]:
    """(n_classes + 2, H, W) probabilities (background, classes..., core) -> int32 instance labels, count."""
    n_classes = probs.shape[0] - 2
    fg_prob = 1.0 - probs[0]
    fg = fg_prob > recipe.fg_threshold
    if detection_type == "segmentation":
        cls = probs[1 : n_classes + 1].argmax(0)
        labels = np.zeros(fg.shape, np.int32)
        total = 0
        for k in range(n_classes):
            lab, n = ndimage.label(fg & (cls == k))
            labels[lab > 0] = lab[lab > 0] + total
            total += n
        return labels, total
    seeds, n_seeds = ndimage.label((probs[-1] > recipe.seed_threshold) & fg)
    if n_seeds:
        sizes = ndimage.sum_labels(np.ones_like(seeds), seeds, index=np.arange(1, n_seeds + 1))
        small = np.flatnonzero(sizes < 3) + 1
        if small.size:
            seeds[np.isin(seeds, small)] = 0
    comps, n_comps = ndimage.label(fg)
    if n_comps == 0:
        return np.zeros(fg.shape, np.int32), 0
    if seeds.any():
        _, (iy, ix) = ndimage.distance_transform_edt(seeds == 0, return_indices=True)
        grown = np.where(fg, seeds[iy, ix], 0)
        # nearest-seed growth must not jump across background into another blob
        seed_comp = np.zeros(seeds.max() + 1, np.int32)
        seed_comp[seeds[seeds > 0]] = comps[seeds > 0]
        grown[seed_comp[grown] != comps] = 0
    else:
        grown = np.zeros(fg.shape, np.int32)
    # foreground blobs without any seed become one object each
    has_seed = np.zeros(n_comps + 1, bool)
    has_seed[comps[seeds > 0]] = True
    orphan = fg & ~has_seed[comps]
    base = int(grown.max())
    labels = grown.astype(np.int32)
    labels[orphan] = comps[orphan] + base
    # leftover foreground pixels of seeded blobs that lost every seed to another blob: drop
    # compact ids with a lookup table (O(pixels), no full-image sort as np.unique would do)
    present = np.zeros(int(labels.max()) + 1, bool)
    present[labels.ravel()] = True
    present[0] = False
    lut = np.zeros(present.size, np.int32)
    lut[present] = np.arange(1, int(present.sum()) + 1, dtype=np.int32)
    return lut[labels], int(present.sum())


def labels_to_detections(labels: np.ndarray, probs: np.ndarray, transform: Affine, config: DetectorConfig,
                         recipe: Recipe, keep: Polygon | None = None) -> list[Detection]:
    """Trace each instance, keep its largest part, simplify, filter by area and (optionally) keep only
    objects whose representative point falls in ``keep`` (pixel coordinates) so adjacent windows do not
    report the same object twice. Geometries are returned in the CRS of ``transform``."""
    n = int(labels.max())
    if n == 0:
        return []
    idx = np.arange(1, n + 1)
    n_classes = probs.shape[0] - 2
    scores = ndimage.mean(1.0 - probs[0], labels, idx)
    cls_means = np.stack([ndimage.mean(probs[1 + k], labels, idx) for k in range(n_classes)])
    cls = cls_means.argmax(0)
    best: dict[int, Polygon] = {}
    for geom, value in shapes(labels, mask=labels > 0, connectivity=4):
        poly = shape(geom)
        v = int(value)
        if v not in best or poly.area > best[v].area:
            best[v] = poly
    out: list[Detection] = []
    for v, poly in best.items():
        if poly.area < recipe.min_area_px:
            continue
        if keep is not None and not keep.contains(poly.representative_point()):
            continue
        if recipe.simplify_px > 0:
            poly = poly.simplify(recipe.simplify_px, preserve_topology=True)
        poly = _single_polygon(poly)
        if poly is None:
            continue
        if config.output_type == "bbox":
            poly = box(*poly.bounds)
        out.append(Detection(pixels_to_geometry(poly, transform), config.classes[int(cls[v - 1])],
                             float(scores[v - 1])))
    return out


def _single_polygon(geom: Any) -> Polygon | None:
    if not geom.is_valid:
        geom = make_valid(geom)
    if geom.geom_type == "Polygon":
        return geom if not geom.is_empty else None
    parts = [g for g in getattr(geom, "geoms", []) if g.geom_type == "Polygon" and not g.is_empty]
    nested = [p for g in getattr(geom, "geoms", []) if g.geom_type == "MultiPolygon" for p in g.geoms]
    parts += nested
    return max(parts, key=lambda p: p.area) if parts else None


def detections_to_geojson(detections: list[Detection], crs: Any) -> dict[str, Any]:
    """A lon/lat (EPSG:4326) GeoJSON FeatureCollection with ``class`` and ``score`` properties."""
    feats = []
    for d in detections:
        geom = image_crs_to_lonlat(d.geometry, crs)
        feats.append({"type": "Feature", "geometry": mapping(geom),
                      "properties": {"class": d.class_name, "score": round(d.score, 4)}})
    return {"type": "FeatureCollection", "features": feats}
