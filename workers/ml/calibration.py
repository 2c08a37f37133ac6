"""Post-processing chosen after training from how the detector does on the user's own training areas.

On real imagery most false detections are faint: their mean foreground probability (the object's score) is
low, while the objects the user outlined come out confident. Which threshold separates them depends on the
imagery (on the five real datasets of the experiments the best fixed threshold ranged from 0.75 to 0.9).
How touching objects are told apart depends on it too: seeds at the core map's peaks split crowns in closed
canopy whose cores touch, but cut a long building in two. So each detector predicts its training areas and
keeps the seeds and the lowest score threshold with the best F1 against the outlines there
(docs/experiments.md, "fitted score threshold").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from shapely.geometry import box

from .config import Recipe
from .datasets import LabelledImage
from .postprocess import Detection
from .predict import predict_areas_post_processed
from .raster_io import open_image
from .scoring import score_detections
from .trained import TrainedModel

SCORE_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def training_f1_by_score_threshold(model: TrainedModel, images: Sequence[LabelledImage],
                                   recipes: Sequence[Recipe] | None = None,
                                   thresholds: Sequence[float] = SCORE_THRESHOLDS) -> list[dict[float, float]]:
    """For each recipe (by default the model's own), F1 at IoU 0.5 in the training areas at each score
    threshold (the recipe's own ``min_score`` ignored). The recipes differ only in post-processing, so the
    network runs once over the areas.

    For ``bbox`` output the outlines are compared as their bounding boxes, as predictions are."""
    recipes = [replace(r, min_score=0.0) for r in (recipes or [model.recipe])]
    predicted: list[list[Detection]] = [[] for _ in recipes]
    truth, areas = [], []
    for item in images:
        with open_image(item.source) as src:
            for out, found in zip(predicted, predict_areas_post_processed(model, src, item.training_areas, recipes),
                                  strict=True):
                out += found
        truth += [(box(*g.bounds) if model.config.output_type == "bbox" else g, c) for g, c in item.outlines]
        areas += list(item.training_areas)
    classes, kind = list(model.config.classes), model.config.detection_type
    return [
        {
            t: float(score_detections([(d.geometry, d.class_name) for d in found if d.score >= t], truth, areas,
                                      classes, kind)["overall"]["f1"])
            for t in thresholds
        }
        for found in predicted
    ]


def calibrate_post_processing(model: TrainedModel, images: Sequence[LabelledImage]) -> tuple[Recipe, dict[str, Any]]:
    """The recipe with the seeds and score threshold that do best in the training areas, and a report
    (the choice and the training F1 of every candidate) for the model card.

    Candidates: connected core regions as seeds, and the core map's peaks when the recipe has a fitted
    ``seed_radius_px``; each with every threshold of ``SCORE_THRESHOLDS``. Ties go to connected seeds (the
    long-standing behaviour), then to the lowest threshold (fewer objects dropped). A recipe asking for
    ``vote_seeds`` on a model with a centre head keeps them (only the threshold is fitted): weighed on the
    training areas votes look better than they are, as the head learnt those very centres (docs/experiments.md,
    "centre head").

    Boxes are not chosen here: with a box-size head they are always the head's size blended with the
    region's (``Recipe.box_region_share``). Weighed on the training areas the head's own boxes looked best,
    because the head has learnt those very boxes; on the scored areas of every real crown dataset the
    blend did better than either (docs/experiments.md, "blended boxes")."""
    boxes = {"regress_boxes": True} if model.network.box_head else {"regress_boxes": False}
    votes = model.recipe.vote_seeds and model.recipe.seed_radius_px >= 1 and model.network.box_channels == 4
    if votes:
        candidates = {"votes": replace(model.recipe, **boxes)}
    else:
        candidates = {"connected": replace(model.recipe, seed_radius_px=0.0, vote_seeds=False, **boxes)}
        if model.recipe.seed_radius_px >= 1:
            candidates["peaks"] = replace(model.recipe, vote_seeds=False, **boxes)
    scored = training_f1_by_score_threshold(model, images, list(candidates.values()))
    best: tuple[float, str, Recipe] | None = None
    report: dict[str, dict[str, float]] = {}
    for (name, recipe), by_threshold in zip(candidates.items(), scored, strict=True):
        report[name] = {str(t): round(f, 4) for t, f in by_threshold.items()}
        top = max(by_threshold.values())
        if best is None or top > best[0] + 1e-9:
            lowest = min(t for t, f in by_threshold.items() if f == top)
            best = (top, name, replace(recipe, min_score=lowest))
    assert best is not None
    chosen = best[2]
    seeds = "votes" if chosen.vote_seeds else "peaks" if chosen.seed_radius_px >= 1 else "connected"
    return chosen, {"seeds": seeds,
                    "boxes": "blended" if chosen.regress_boxes else "regions",
                    "min_score": chosen.min_score, "training_f1": report}
