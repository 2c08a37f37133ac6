"""Change datasets: generated pairs of one place at two dates (``workers.ml.synthetic_change``), and the
baseline a change detector must beat: a threshold on the pixel difference between the dates.

``change/<kind>`` names a pair written once into ``var/experiments/datasets/change/<kind>/`` (``before.tif``,
``after.tif``); its ``LabelledImage.source`` is an ``ImagePairSource``, so ``runner.run_one`` trains a change
model on it (``Recipe.dates`` follows the training images) and scores it exactly like any other dataset.
Training areas are the left half (squares holding <= 100 labelled changes), accuracy areas the right half.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from rasterio.features import rasterize, shapes
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from workers.ml.datasets import LabelledImage
from workers.ml.raster_io import ImagePairSource, geometry_to_pixels, open_image, read_window
from workers.ml.scoring import score_detections
from workers.ml.synthetic import Scene, split_areas
from workers.ml.synthetic_change import ScenePair, make_pair

from .dataset import VAR, ExperimentDataset

# name -> (generator, seed, gsd in metres, density)
CHANGE: dict[str, tuple[str, int, float, float]] = {
    "buildings-new": ("buildings-new", 61, 0.4, 1.3),
    "trees-cleared": ("trees-cleared", 71, 0.25, 1.0),
}


def change_dataset_names() -> list[str]:
    return [f"change/{n}" for n in CHANGE]


def labelled_pair(pair: ScenePair, folder: Path, max_outlines: int = 100, area_px: int = 256, seed: int = 0
                  ) -> tuple[LabelledImage, list[tuple[BaseGeometry, str]]]:
    """Write both dates into ``folder``; return the pair with its areas and the labelled changes touching its
    training areas, and every labelled change (the truth), in the first date's CRS (as ``labelled_scene``)."""
    before, after = pair.write(folder)
    counted = Scene(pair.before.image, pair.changes, pair.before.gsd, pair.classes, transform=pair.before.transform)
    train_px, acc_px = split_areas(counted, max_outlines, area_px, seed)
    train = [pair.to_crs(a) for a in train_px]
    truth = [(pair.to_crs(g), c) for g, c in pair.changes]
    outlines = [(g, c) for g, c in truth if any(g.intersects(a) for a in train)]
    item = LabelledImage(ImagePairSource(str(before), str(after)), train, outlines, [pair.to_crs(a) for a in acc_px])
    return item, truth


def change_dataset(name: str, root: Path = VAR / "datasets") -> ExperimentDataset:
    kind, seed, gsd, density = CHANGE[name]
    pair = make_pair(kind, seed, (1024, 1024), gsd, density)
    item, truth = labelled_pair(pair, root / "change" / name, seed=seed)
    return ExperimentDataset(f"change/{name}", item, truth, pair.classes, "count",
                             notes=f"{kind} gsd={gsd} m density={density} misregistration={pair.shift}")


# --- the pixel-difference baseline ------------------------------------------------------------------------

SIGMAS = (1.0, 2.0, 4.0)
THRESHOLDS = tuple(range(8, 128, 6))


def difference_map(pair_image: np.ndarray, sigma: float) -> np.ndarray:
    """Mean absolute difference over the bands between the two dates of a (6, H, W) window, smoothed."""
    diff = np.abs(pair_image[3:].astype(np.float32) - pair_image[:3].astype(np.float32)).mean(0)
    return ndimage.gaussian_filter(diff, sigma)


def difference_objects(diff: np.ndarray, threshold: float, min_area_px: float, transform: Any, name: str
                       ) -> list[tuple[BaseGeometry, str]]:
    """The connected regions where ``diff`` exceeds ``threshold`` (at least ``min_area_px``), as polygons in
    the CRS of ``transform``."""
    labels, n = ndimage.label(diff > threshold)
    if not n:
        return []
    out = []
    for geom, value in shapes(labels.astype(np.int32), mask=labels > 0, transform=transform):
        g = shape(geom)
        if value and g.area >= min_area_px * abs(transform.a * transform.e):
            out.append((g, name))
    return out


def difference_baseline(ds: ExperimentDataset) -> dict[str, Any]:
    """Score the pixel-difference baseline as a detector is scored: the smoothing and threshold that give the
    best F1 on the training areas (against the training outlines; regions under half the smallest outline
    dropped, the size prior detectors use), then F1 on the accuracy areas against the truth."""
    item = ds.item
    with open_image(item.source) as src:
        image = read_window(src, Window(0, 0, src.width, src.height))
        transform = src.transform
    sizes = [geometry_to_pixels(g, transform).area for g, _ in item.outlines]
    min_area = 0.5 * min(sizes) if sizes else 12.0
    name = ds.classes[0]
    best: tuple[float, float, float] = (-1.0, SIGMAS[0], THRESHOLDS[0])
    for sigma in SIGMAS:
        diff = difference_map(image, sigma)
        masked = _inside(diff, item.training_areas, transform)
        for t in THRESHOLDS:
            found = difference_objects(masked, t, min_area, transform, name)
            f1 = _f1(found, item.outlines, item.training_areas, ds.classes)
            if f1 > best[0]:
                best = (f1, sigma, t)
    _, sigma, t = best
    found = difference_objects(_inside(difference_map(image, sigma), item.accuracy_areas, transform), t, min_area,
                               transform, name)
    scores = score_detections(found, ds.truth, item.accuracy_areas, ds.classes, ds.detection_type)["overall"]
    return {"dataset": ds.name, "method": "difference", "sigma": sigma, "threshold": t,
            "precision": round(scores["precision"], 3), "recall": round(scores["recall"], 3),
            "f1": round(scores["f1"], 3)}


def _inside(diff: np.ndarray, areas: Sequence[BaseGeometry], transform: Any) -> np.ndarray:
    """``diff`` with everything outside ``areas`` zeroed (regions never cross an area's edge)."""
    inside = rasterize(((a, 1) for a in areas), out_shape=diff.shape, transform=transform, dtype="uint8").astype(bool)
    return np.where(inside, diff, 0.0)


def _f1(found: list, truth: list, areas: Sequence[BaseGeometry], classes: list[str]) -> float:
    return float(score_detections(found, truth, areas, classes, "count")["overall"]["f1"])
