"""Where to label next: the squares of an image, outside the areas already drawn, where a trained detector is
least sure, ranked, each with a one-line reason in plain words.

The image is cut into a coarse grid of squares the size of a typical training area; squares overlapping a
training or accuracy area are left out (they are labelled already). At most ``max_windows`` squares (and
``max_pixels`` pixels of prediction) are read, an even random sample when the image holds more, so a huge
image costs the same as a small one. Each square is predicted twice at the model's own resolution
(``predict_array``), as read and mirrored, and measured by three signals:

- ``faint``: the share of pixels the detector sees, as read and mirrored, as somewhat object-like but under
  its threshold (objects it may be missing);
- ``disagreement``: how much the foreground changes when the image is mirrored (a sure detector answers the
  same);
- ``detected``: the share of pixels over the threshold both ways (where its false detections would be).

Each signal is a share of the square's pixels, or with ``unit="objects"`` a number of would-be objects (its
connected regions of at least the detector's smallest object; ``object_counts``), an option measured by the
simulated user of ``workers.experiments.recommendation`` (docs/experiments.md) and not yet the platform's default.

The review of the accuracy areas says which of these matter: many misses weigh the faint candidates up,
many false detections weigh the detected pixels up. Each signal is normalised by its largest value over the
squares, so the score (0-1) ranks squares within one image; it is not comparable across images.

``rank_by="typical"`` ranks without the detector's answers, for a detector too weak for its doubts to mean
much (active learning's cold start): each square's pooled encoder features say what it looks like, and the
squares most typical of the image (closest to their nearest squares) and least like any training area come
first (``typical_and_unlike``, after TypiClust: Hacohen et al., 2022). Measured by the simulated user
(docs/experiments.md, eighth session); not the platform's default.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import shapely
import torch
from rasterio.io import DatasetReader
from rasterio.windows import Window
from scipy import ndimage
from shapely.geometry import Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from .predict import predict_array
from .raster_io import ImagePair, geometry_to_pixels, read_window, window_geometry
from .trained import TrainedModel

MAX_SUGGESTIONS = 5
MAX_WINDOWS = 48  # squares predicted per image, at most
MAX_PIXELS = 6_000_000  # pixels predicted per image (both passes, margins included), at most: ~30 squares of 256 px
SIGNAL_UNITS = ("pixels", "objects")  # what the signals measure (``window_signals``)
RANKINGS = ("uncertainty", "typical")  # what ranks the squares (``suggest_areas``)
TYPICAL_NEIGHBOURS = 20  # a square's typicality: how close its nearest squares are, this many of them
MIN_SIDE, MAX_SIDE, DEFAULT_SIDE = 64, 1024, 256  # the square's side in pixels
OVERLAP_ALLOWED = 0.05  # a square may share this much of its area with the areas already drawn
FAINT_LOW = 0.4  # foreground probabilities from this fraction of the threshold up to it are "faint"
# signals under these are noise (float rounding of a mirrored pass, a few stray pixels): counted as none
MIN_SIGNAL = {"faint": 1e-3, "disagreement": 1e-3, "detected": 1e-3}

REASONS = {
    "faint": "Many faint candidates: the detector sees something here but is not sure enough to report it.",
    "faint_missed": "Many faint candidates, like the objects it missed in the accuracy areas.",
    "disagreement": "The detector changes its answer when the image is mirrored: it is unsure here.",
    "detected": "Many detections here, and it made false detections in the accuracy areas: check them.",
    "typical": "Looks like much of this image and unlike the areas labelled so far.",
}

# review kinds (workers.ml.scoring.ReviewKind) counted to weigh the signals
_REVIEW = tuple[BaseGeometry, str, str]


@dataclass
class Suggestion:
    """One proposed area: a square in the image CRS, its rank (1 = label first), score (0-1, higher is less
    sure), the reason in plain words and the signals it was ranked by."""

    geometry: Polygon
    rank: int
    score: float
    reason: str
    signals: dict[str, float] = field(default_factory=dict)


def suggestion_side(training_areas: Sequence[BaseGeometry], transform, width: int, height: int) -> int:
    """The side in pixels of the squares proposed: the typical (median) training area's, as a square of its
    area, within ``MIN_SIDE``-``MAX_SIDE``, and at most a quarter of the image's shorter side (so a handful
    fit beside the areas drawn) unless that is under ``MIN_SIDE``; never larger than the image."""
    sides = [math.sqrt(geometry_to_pixels(a, transform).area) for a in training_areas if not a.is_empty]
    side = int(round(float(np.median(sides)))) if sides else DEFAULT_SIDE
    side = min(max(MIN_SIDE, min(MAX_SIDE, side)), max(MIN_SIDE, min(width, height) // 4))
    return max(1, min(side, width, height))


def candidate_windows(width: int, height: int, side: int, drawn_px: Sequence[BaseGeometry], limit: int,
                      seed: int = 0) -> list[Window]:
    """The grid of ``side`` squares covering the image (centred, whole squares only) that do not overlap the
    areas drawn (pixel coordinates) by more than ``OVERLAP_ALLOWED``; an even random sample of ``limit``
    when there are more (fixed by ``seed``: the same image gives the same squares)."""
    cols, rows = max(1, width // side), max(1, height // side)
    x0, y0 = (width - cols * side) // 2, (height - rows * side) // 2
    boxes = [box(x0 + c * side, y0 + r * side, x0 + (c + 1) * side, y0 + (r + 1) * side)
             for r in range(rows) for c in range(cols)]
    drawn = unary_union([g for g in drawn_px if not g.is_empty]) if drawn_px else None
    if drawn is not None and not drawn.is_empty:
        shapely.prepare(drawn)
        boxes = [b for b in boxes if not drawn.intersects(b) or drawn.intersection(b).area <= OVERLAP_ALLOWED * b.area]
    if len(boxes) > limit:
        picked = np.random.default_rng(seed).choice(len(boxes), size=limit, replace=False)
        boxes = [boxes[i] for i in sorted(picked)]
    return [Window(int(b.bounds[0]), int(b.bounds[1]), side, side) for b in boxes]


def window_signals(model: TrainedModel, image: np.ndarray, margin: int, unit: str = "pixels"
                   ) -> dict[str, float] | None:
    """The three signals of one square read with ``margin`` pixels of context (measured inside the margin);
    None for a square with no image (all zeros: outside the footprint, or nodata). ``unit``: ``pixels`` (the
    share of the square's pixels) or ``objects`` (``object_counts``)."""
    inner = image[:, margin : image.shape[1] - margin, margin : image.shape[2] - margin]
    if not inner.any():
        return None
    fg = 1.0 - predict_array(model, image)[0]
    mirrored = 1.0 - predict_array(model, np.ascontiguousarray(image[:, :, ::-1]))[0][:, ::-1]
    inside = (slice(margin, fg.shape[0] - margin), slice(margin, fg.shape[1] - margin))
    fg, mirrored = fg[inside], mirrored[inside]
    t = model.recipe.fg_threshold

    def faint(p: np.ndarray) -> np.ndarray:
        return (p >= FAINT_LOW * t) & (p < t)

    if unit == "objects":
        return object_counts(faint(fg) & faint(mirrored), (fg >= t) != (mirrored >= t), (fg >= t) & (mirrored >= t),
                             model.recipe.min_area_px)
    signals = {
        "faint": float((faint(fg) & faint(mirrored)).mean()),  # faint both ways: not a disagreement
        "disagreement": float(np.abs(fg - mirrored).mean()),
        "detected": float(((fg >= t) & (mirrored >= t)).mean()),
    }
    return {k: (v if v >= MIN_SIGNAL[k] else 0.0) for k, v in signals.items()}


def object_counts(faint: np.ndarray, disagreeing: np.ndarray, detected: np.ndarray, min_area_px: float
                  ) -> dict[str, float]:
    """The signals as numbers of would-be objects rather than shares of pixels: the connected regions
    (8-neighbours) of faint, disagreeing (over the threshold one way only) and detected pixels of at least
    the detector's smallest object (``min_area_px``; half of it for disagreement, which often covers only part
    of an object). A square of ten unsure objects then outranks one of a single large unsure shape covering
    more pixels, on the idea that ten objects teach more; measured, it did no better than shares of pixels
    (docs/experiments.md, seventh session)."""
    eight = np.ones((3, 3), bool)

    def count(mask: np.ndarray, least: float) -> float:
        labels, n = ndimage.label(mask, structure=eight)
        return float((np.bincount(labels.ravel(), minlength=n + 1)[1:] >= max(1.0, least)).sum()) if n else 0.0

    return {"faint": count(faint, min_area_px), "disagreement": count(disagreeing, min_area_px / 2),
            "detected": count(detected, min_area_px)}


def square_embedding(model: TrainedModel, image: np.ndarray) -> np.ndarray:
    """What a square looks like to the detector: its deepest encoder features averaged over the square, unit
    length (a pair's features for a change detector)."""
    with torch.no_grad():
        feats = model.network.encode(torch.from_numpy(np.ascontiguousarray(image))[None].to(model.device))
    v = feats[-1].float().mean(dim=(2, 3))[0].cpu().numpy().astype(np.float64)
    return v / (np.linalg.norm(v) + 1e-12)


def typical_and_unlike(squares: np.ndarray, labelled: np.ndarray, neighbours: int = TYPICAL_NEIGHBOURS
                       ) -> list[dict[str, float]]:
    """Per square (rows of unit embeddings): ``typical``, the inverse of its mean distance to its nearest
    ``neighbours`` squares (high where the image has many squares like it), and ``unlike_labelled``, its
    distance to the nearest labelled square's embedding (1 without any). A labelled square teaches what it
    looks like, so the next most useful one is common in the image and unlike those."""
    n = len(squares)
    if n == 0:
        return []
    k = min(neighbours, n - 1)
    typical = 1.0 / (np.sort(_distances(squares, squares), axis=1)[:, 1 : k + 1].mean(1) + 1e-6) if k else np.ones(n)
    unlike = _distances(squares, labelled).min(1) if len(labelled) else np.ones(n)
    return [{"typical": float(t), "unlike_labelled": float(u)} for t, u in zip(typical, unlike, strict=True)]


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and those of ``b``."""
    return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))


def signal_weights(review: Sequence[_REVIEW]) -> tuple[dict[str, float], bool]:
    """How much each signal counts, from the accuracy areas' review: misses weigh faint candidates up, false
    detections weigh detected pixels up (without a review only faint and disagreement count). Also whether
    misses are frequent enough to say so."""
    kinds = [kind for _, _, kind in review]
    matches, misses, false = kinds.count("match"), kinds.count("miss"), kinds.count("false_detection")
    miss_rate = misses / (misses + matches) if misses + matches else 0.0
    false_rate = false / (false + matches) if false + matches else 0.0
    return {"faint": 1.0 + 2.0 * miss_rate, "disagreement": 1.0, "detected": 2.0 * false_rate}, miss_rate >= 0.3


def rank_windows(signals: Sequence[dict[str, float]], weights: dict[str, float], missed: bool
                 ) -> list[tuple[float, str]]:
    """Each square's score (0-1: its weighted signals, each over its largest value among the squares, over
    the weights of the signals seen anywhere) and
    its reason (the signal that counts most there)."""
    top = {k: max((s[k] for s in signals), default=0.0) for k in weights}
    total = sum(w for k, w in weights.items() if top[k] > 0) or 1.0  # signals seen nowhere do not dilute
    out = []
    for s in signals:
        parts = {k: (weights[k] * s[k] / top[k] if top[k] > 0 else 0.0) for k in weights}
        main = max(parts, key=lambda k: parts[k])
        reason = "faint_missed" if main == "faint" and missed else main
        out.append((sum(parts.values()) / total, REASONS[reason]))
    return out


def typical_scores(signals: Sequence[dict[str, float]]) -> list[float]:
    """Each square's score (0-1): its typicality times its distance to the labelled squares, each over its
    largest value among the squares."""
    top = {k: max((s[k] for s in signals), default=0.0) for k in ("typical", "unlike_labelled")}
    return [math.prod(s[k] / top[k] if top[k] > 0 else 0.0 for k in top) for s in signals]


def area_windows(areas: Sequence[BaseGeometry], src: DatasetReader | ImagePair, side: int) -> list[Window]:
    """A ``side`` square window for each area (image CRS), centred on it and inside the image: what the
    training areas look like, at the size of the squares they are compared with."""
    out = []
    for a in areas:
        if a.is_empty:
            continue
        c = geometry_to_pixels(a, src.transform).centroid
        col = int(min(max(round(c.x - side / 2), 0), max(0, src.width - side)))
        row = int(min(max(round(c.y - side / 2), 0), max(0, src.height - side)))
        out.append(Window(col, row, side, side))
    return out


def _spread(order: list[int], windows: Sequence[Window], n: int) -> list[int]:
    """The first ``n`` of ``order``, preferring squares that do not touch one already chosen (five squares
    side by side show one spot, not five), then filling with the rest in order."""
    chosen: list[int] = []
    for i in order:
        if len(chosen) == n:
            break
        w = windows[i]
        if all(abs(w.col_off - windows[j].col_off) > w.width or abs(w.row_off - windows[j].row_off) > w.height
               for j in chosen):
            chosen.append(i)
    chosen += [i for i in order if i not in chosen][: n - len(chosen)]
    return chosen


def suggest_areas(
    model: TrainedModel,
    src: DatasetReader | ImagePair,
    *,
    training_areas: Sequence[BaseGeometry] = (),
    accuracy_areas: Sequence[BaseGeometry] = (),
    review: Sequence[_REVIEW] = (),
    side: int | None = None,
    max_suggestions: int = MAX_SUGGESTIONS,
    max_windows: int = MAX_WINDOWS,
    max_pixels: int = MAX_PIXELS,
    seed: int = 0,
    unit: str = "pixels",
    rank_by: str = "uncertainty",
) -> list[Suggestion]:
    """Up to ``max_suggestions`` squares of an open image (image CRS) where ``model`` is least sure, outside
    the training and accuracy areas (image CRS), ranked; ``review`` is the accuracy areas' review
    (``ImageEvaluation.review``), used to weigh the signals. ``side`` (pixels) defaults to the training
    areas' typical size; ``unit`` what the signals count (``window_signals``); ``rank_by`` ``typical`` ranks by
    what the squares look like instead (``typical_and_unlike``). Squares with no signal at all are not
    proposed, so fewer may come back."""
    if unit not in SIGNAL_UNITS:
        raise ValueError(f"unknown signal unit {unit!r}")
    if rank_by not in RANKINGS:
        raise ValueError(f"unknown ranking {rank_by!r}")
    if side is None:
        side = suggestion_side(training_areas, src.transform, src.width, src.height)
    side = max(1, min(side, src.width, src.height))
    margin = int(model.recipe.overlap)
    per_window = 2 * (side + 2 * margin) ** 2  # predicted as read and mirrored
    limit = max(1, min(max_windows, max_pixels // per_window))
    drawn_px = [geometry_to_pixels(a, src.transform) for a in [*training_areas, *accuracy_areas]]
    windows = candidate_windows(src.width, src.height, side, drawn_px, limit, seed)
    measured: list[tuple[Window, dict[str, float]]] = []
    if rank_by == "typical":
        looks: list[tuple[Window, np.ndarray]] = []  # each square's embedding, computed as read
        for w in windows:
            image = read_window(src, w)
            if image.any():
                looks.append((w, square_embedding(model, image)))
        labelled = [square_embedding(model, read_window(src, w)) for w in area_windows(training_areas, src, side)]
        signals = typical_and_unlike(np.array([v for _, v in looks]), np.array(labelled))
        measured = [(w, s) for (w, _), s in zip(looks, signals, strict=True)]
        ranked = [(score, REASONS["typical"]) for score in typical_scores(signals)]
    else:
        # one pass each, as read and mirrored, whatever test-time augmentation the model predicts with
        once = dataclasses.replace(model, recipe=dataclasses.replace(model.recipe, tta=1))
        for w in windows:
            image = read_window(src, Window(w.col_off - margin, w.row_off - margin, side + 2 * margin,
                                            side + 2 * margin))
            signals = window_signals(once, image, margin, unit)
            if signals is not None:
                measured.append((w, signals))
        weights, missed = signal_weights(review)
        ranked = rank_windows([s for _, s in measured], weights, missed)
    order = sorted((i for i, (score, _) in enumerate(ranked) if score > 0), key=lambda i: (-ranked[i][0], i))
    picked = _spread(order, [w for w, _ in measured], max_suggestions)
    return [
        Suggestion(
            geometry=window_geometry(measured[i][0], src.transform),
            rank=rank,
            score=round(ranked[i][0], 4),
            reason=ranked[i][1],
            signals={k: round(v, 5) for k, v in measured[i][1].items()},
        )
        for rank, i in enumerate(picked, start=1)
    ]
