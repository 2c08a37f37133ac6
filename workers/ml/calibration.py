"""Choices made after training from how the detector does on the user's own training areas.

On real imagery most false detections are faint: their mean foreground probability (the object's score) is
low, while the objects the user outlined come out confident. Which threshold separates them depends on the
imagery (on the five real datasets of the experiments the best fixed threshold ranged from 0.75 to 0.9),
so each detector picks its own: it predicts its training areas and keeps the lowest threshold with the
best F1 against the outlines there (docs/experiments.md, "score threshold").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from shapely.geometry import box

from .datasets import LabelledImage
from .predict import predict_areas
from .raster_io import open_image
from .scoring import score_detections
from .trained import TrainedModel

SCORE_THRESHOLDS = (0.0, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9)


def training_f1_by_score_threshold(model: TrainedModel, images: Sequence[LabelledImage],
                                   thresholds: Sequence[float] = SCORE_THRESHOLDS) -> dict[float, float]:
    """F1 at IoU 0.5 in the training areas for each score threshold (the model's own threshold set to 0).

    For ``bbox`` output the outlines are compared as their bounding boxes, as predictions are."""
    model = replace(model, recipe=replace(model.recipe, min_score=0.0))
    predicted, truth, areas = [], [], []
    for item in images:
        with open_image(item.source) as src:
            predicted += predict_areas(model, src, item.training_areas)
        truth += [(box(*g.bounds) if model.config.output_type == "bbox" else g, c) for g, c in item.outlines]
        areas += list(item.training_areas)
    classes, kind = list(model.config.classes), model.config.detection_type
    return {
        t: float(score_detections([(d.geometry, d.class_name) for d in predicted if d.score >= t], truth, areas,
                                  classes, kind)["overall"]["f1"])
        for t in thresholds
    }


def fit_min_score(model: TrainedModel, images: Sequence[LabelledImage]) -> tuple[float, dict[float, float]]:
    """The lowest score threshold with the best training-area F1, and the F1 of every threshold tried."""
    by_threshold = training_f1_by_score_threshold(model, images)
    best = max(by_threshold.values())
    return min(t for t, f in by_threshold.items() if f == best), by_threshold
