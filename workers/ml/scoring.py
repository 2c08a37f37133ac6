"""Accuracy over accuracy areas only: the "score" users see.

Count detectors: one-to-one matching (Hungarian on IoU) at IoU >= 0.5 (and 0.4), object precision,
recall, F1 and count error. Segmentation detectors: pixel (area) precision, recall, F1 and IoU computed
exactly on geometries. Per class, per accuracy area and overall. All geometries in one CRS (image CRS).

An object belongs to an accuracy area when its representative point lies inside it (the same rule the
predictor uses for windows), so objects cut by the area edge are neither double-counted nor lost.

Also here, because it is the same matching of predictions against the user's outlines: the review shown on
the map (matches, misses, false detections) and the check for objects left unoutlined in training areas.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from shapely import STRtree
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

Labelled = tuple[BaseGeometry, str]


def _prf(tp: float, n_pred: float, n_true: float) -> dict[str, float]:
    p = tp / n_pred if n_pred else (1.0 if n_true == 0 else 0.0)
    r = tp / n_true if n_true else (1.0 if n_pred == 0 else 0.0)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": p, "recall": r, "f1": f1}


def match_pairs(
    pred: Sequence[BaseGeometry], true: Sequence[BaseGeometry], iou_threshold: float
) -> list[tuple[int, int]]:
    """One-to-one (pred index, true index) matches with IoU >= threshold (maximum-weight assignment on IoU)."""
    if not pred or not true:
        return []
    iou = np.zeros((len(pred), len(true)))
    tree = STRtree(list(true))
    for i, p in enumerate(pred):
        for j in tree.query(p):
            t = true[j]
            inter = p.intersection(t).area
            if inter > 0:
                iou[i, j] = inter / (p.area + t.area - inter)
    iou[iou < iou_threshold] = 0.0
    rows, cols = linear_sum_assignment(-iou)
    return [(int(i), int(j)) for i, j in zip(rows, cols, strict=True) if iou[i, j] >= iou_threshold]


def match_objects(pred: Sequence[BaseGeometry], true: Sequence[BaseGeometry], iou_threshold: float) -> int:
    """Number of one-to-one matches with IoU >= threshold."""
    return len(match_pairs(pred, true, iou_threshold))


def _inside(objs: Sequence[Labelled], area: BaseGeometry) -> list[Labelled]:
    return [(g, c) for g, c in objs if area.contains(g.representative_point())]


def _count_scores(pred: Sequence[Labelled], true: Sequence[Labelled]) -> dict[str, Any]:
    pg, tg = [g for g, _ in pred], [g for g, _ in true]
    out: dict[str, Any] = {"n_pred": len(pg), "n_true": len(tg)}
    for thr, suffix in ((0.5, ""), (0.4, "_iou40")):
        m = match_objects(pg, tg, thr)
        for k, v in _prf(m, len(pg), len(tg)).items():
            out[k + suffix] = v
        out["matches" + suffix] = m
    out["count_error"] = (len(pg) - len(tg)) / len(tg) if tg else float(len(pg))
    return out


def _area_scores(pred: Sequence[Labelled], true: Sequence[Labelled], area: BaseGeometry) -> dict[str, Any]:
    pu = unary_union([g for g, _ in pred]).intersection(area) if pred else None
    tu = unary_union([g for g, _ in true]).intersection(area) if true else None
    pa = pu.area if pu is not None else 0.0
    ta = tu.area if tu is not None else 0.0
    inter = pu.intersection(tu).area if pu is not None and tu is not None else 0.0
    out: dict[str, Any] = {"area_pred": pa, "area_true": ta, "area_tp": inter}
    p = inter / pa if pa else (1.0 if ta == 0 else 0.0)
    r = inter / ta if ta else (1.0 if pa == 0 else 0.0)
    out.update(
        precision=p,
        recall=r,
        f1=2 * p * r / (p + r) if p + r else 0.0,
        iou=inter / (pa + ta - inter) if pa + ta - inter > 0 else 1.0,
    )
    return out


def score_detections(
    predicted: Sequence[Labelled],
    truth: Sequence[Labelled],
    accuracy_areas: Sequence[BaseGeometry],
    classes: Sequence[str],
    detection_type: str = "count",
) -> dict[str, Any]:
    """Score predicted (geometry, class) pairs against true ones inside ``accuracy_areas``.

    Returns ``{"overall": {...}, "per_class": {cls: {...}}, "per_area": [{...}, ...]}``; each block holds
    precision/recall/f1 (IoU 0.5), the same at IoU 0.4 with an ``_iou40`` suffix and ``count_error`` for
    count detectors, or pixel precision/recall/f1/iou for segmentation detectors.
    """

    def block(pred: Sequence[Labelled], true: Sequence[Labelled], areas: Sequence[BaseGeometry]) -> dict:
        if detection_type == "segmentation":
            area = unary_union(list(areas))
            return _area_scores(pred, true, area)
        p_in = [o for a in areas for o in _inside(pred, a)]
        t_in = [o for a in areas for o in _inside(true, a)]
        return _count_scores(p_in, t_in)

    result: dict[str, Any] = {"detection_type": detection_type}
    if detection_type == "count":
        # matching is class-aware: overall counts the sum of per-class matches
        per_class = {
            c: block([o for o in predicted if o[1] == c], [o for o in truth if o[1] == c], accuracy_areas)
            for c in classes
        }
        tp = sum(v["matches"] for v in per_class.values())
        tp40 = sum(v["matches_iou40"] for v in per_class.values())
        n_pred = sum(v["n_pred"] for v in per_class.values())
        n_true = sum(v["n_true"] for v in per_class.values())
        overall: dict[str, Any] = {"n_pred": n_pred, "n_true": n_true, "matches": tp, "matches_iou40": tp40}
        overall.update(_prf(tp, n_pred, n_true))
        overall.update({k + "_iou40": v for k, v in _prf(tp40, n_pred, n_true).items()})
        overall["count_error"] = (n_pred - n_true) / n_true if n_true else float(n_pred)
    else:
        per_class = {
            c: block([o for o in predicted if o[1] == c], [o for o in truth if o[1] == c], accuracy_areas)
            for c in classes
        }
        overall = block(list(predicted), list(truth), accuracy_areas)
    result["overall"] = overall
    result["per_class"] = per_class
    result["per_area"] = [block(predicted, truth, [a]) for a in accuracy_areas]
    return result


ReviewKind = Literal["match", "false_detection", "miss", "unoutlined"]


def review_detections(
    predicted: Sequence[Labelled],
    truth: Sequence[Labelled],
    accuracy_areas: Sequence[BaseGeometry],
    classes: Sequence[str],
    detection_type: str = "count",
) -> list[tuple[BaseGeometry, str, ReviewKind]]:
    """Where the detector was right and wrong inside the accuracy areas, for the user to see on the map.

    Count detectors: each prediction is a ``match`` (IoU >= 0.5, same class, as scored) or a
    ``false_detection``; each true object left unmatched is a ``miss``. Segmentation detectors: the predicted
    area outside the true one is ``false_detection``, the true area not predicted is ``miss``.
    """
    out: list[tuple[BaseGeometry, str, ReviewKind]] = []
    if detection_type == "segmentation":
        region = unary_union(list(accuracy_areas))
        for c in classes:
            pu = unary_union([g for g, k in predicted if k == c]).intersection(region)
            tu = unary_union([g for g, k in truth if k == c]).intersection(region)
            for geometry, kind in ((pu.difference(tu), "false_detection"), (tu.difference(pu), "miss")):
                for part in getattr(geometry, "geoms", [geometry]):
                    if part.geom_type == "Polygon" and part.area > 0:
                        out.append((part, c, kind))
        return out
    for c in classes:
        p_in = [g for a in accuracy_areas for g, _ in _inside([o for o in predicted if o[1] == c], a)]
        t_in = [g for a in accuracy_areas for g, _ in _inside([o for o in truth if o[1] == c], a)]
        pairs = match_pairs(p_in, t_in, 0.5)
        matched_pred, matched_true = {i for i, _ in pairs}, {j for _, j in pairs}
        out += [(g, c, "match" if i in matched_pred else "false_detection") for i, g in enumerate(p_in)]
        out += [(g, c, "miss") for j, g in enumerate(t_in) if j not in matched_true]
    return out


def unoutlined_detections(
    predicted: Sequence[Labelled],
    outlines: Sequence[Labelled],
    training_areas: Sequence[BaseGeometry],
    detection_type: str = "count",
    share: float = 0.4,
) -> list[tuple[BaseGeometry, str, ReviewKind]]:
    """What the trained detector finds inside training areas that no outline covers: likely objects the user
    forgot to outline (the classic mistake: they are learned as "not an object"). Shown for the user to check.

    The part of each prediction outside every outline (any class) is kept when it is at least ``share`` of
    the median outline's area (or of the prediction, with no outline drawn): a forgotten object merged with
    an outlined neighbour into one prediction still shows, slivers along outline edges do not. A find is reported
    only when most of it (over half of its area) lies inside the training areas, so outlining it puts the
    object where training learns from it (segmentation: clipped to the areas).
    """
    if not predicted or not training_areas:
        return []
    drawn = unary_union([g for g, _ in outlines]) if outlines else None
    median = float(np.median([g.area for g, _ in outlines])) if outlines else 0.0
    region = unary_union(list(training_areas))
    out: list[tuple[BaseGeometry, str, ReviewKind]] = []
    for g, c in predicted:
        if detection_type == "segmentation":
            g = g.intersection(region)
        rest = g.difference(drawn) if drawn is not None else g
        least = share * (median if median else g.area)
        for part in getattr(rest, "geoms", [rest]):
            if part.geom_type != "Polygon" or part.is_empty or part.area < least:
                continue
            if part.intersection(region).area > 0.5 * part.area:
                out.append((part, c, "unoutlined"))
    return out
