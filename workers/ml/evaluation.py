"""Evaluating a trained model on an image the way a training run does: one function for every caller.

A training run (``workers.pipelines``), ``python -m workers.ml evaluate`` and the experiment runner
(``workers.experiments.runner``) all call ``evaluate_image`` per image and ``evaluation_metrics`` over the
images, so a methodology measured by the experiments scores exactly what the platform shows its users:
the same prediction inside the areas (``predict_areas``), the same scoring, the same review.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rasterio.io import DatasetReader
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from .postprocess import Detection
from .predict import predict_areas
from .scoring import Labelled, ReviewKind, review_detections, score_detections, unoutlined_detections
from .trained import TrainedModel

ReviewItem = tuple[BaseGeometry, str, ReviewKind]

# An object left without an outline was taught as background, so the model's confidence there is damped:
# the training areas' check looks with at most this foreground threshold (it only suggests a look).
UNOUTLINED_FG_THRESHOLD = 0.3

NO_ACCURACY_AREA_NOTE = "Draw an accuracy area and outline its objects to get a score."


@dataclass
class ImageEvaluation:
    """What one image tells about a trained model; all geometries in the image CRS.

    ``accuracy`` and ``truth`` are kept (not only their scores) because a score over several images is
    computed over all their objects at once, as one training run's score is.
    """

    testing: list[Detection] = field(default_factory=list)  # predicted in testing areas: shown, never scored
    accuracy: list[Detection] = field(default_factory=list)  # predicted in accuracy areas: scored
    truth: list[Labelled] = field(default_factory=list)  # the outlines touching the accuracy areas
    accuracy_areas: list[BaseGeometry] = field(default_factory=list)
    # matches, false detections and misses in the accuracy areas, then the unoutlined finds of training areas
    review: list[ReviewItem] = field(default_factory=list)
    unoutlined: int = 0
    predict_s: float = 0.0  # seconds spent predicting (not scoring), for the experiments' timings


def unoutlined_check_model(model: TrainedModel) -> TrainedModel:
    """The model as the training areas' check uses it: foreground threshold capped at
    ``UNOUTLINED_FG_THRESHOLD`` and no score threshold (the fitted one drops exactly the faint finds this
    check is for; same network, nothing copied)."""
    capped = min(model.recipe.fg_threshold, UNOUTLINED_FG_THRESHOLD)
    return dataclasses.replace(model, recipe=dataclasses.replace(model.recipe, fg_threshold=capped, min_score=0.0))


def evaluate_image(
    model: TrainedModel,
    src: DatasetReader,
    *,
    classes: Sequence[str],
    detection_type: str,
    accuracy_areas: Sequence[BaseGeometry] = (),
    truth: Sequence[Labelled] = (),
    testing_areas: Sequence[BaseGeometry] = (),
    training_areas: Sequence[BaseGeometry] = (),
    training_outlines: Sequence[Labelled] = (),
) -> ImageEvaluation:
    """Predict an open image's testing, accuracy and training areas and review what was found.

    Only the objects touching an area are predicted there (``predict_areas``); ``truth`` may hold every
    outline of the image: only those touching the accuracy areas are kept. Without training areas the
    check for unoutlined objects is skipped (the experiments do not need it).
    """
    started = time.monotonic()
    testing = predict_areas(model, src, testing_areas)
    accuracy = predict_areas(model, src, accuracy_areas)
    in_training = predict_areas(unoutlined_check_model(model), src, training_areas) if training_areas else []
    predict_s = time.monotonic() - started
    region = unary_union(list(accuracy_areas)) if accuracy_areas else None
    scored_truth = [(g, c) for g, c in truth if region is not None and g.intersects(region)]
    predicted = [(d.geometry, d.class_name) for d in accuracy]
    review: list[ReviewItem] = []
    if accuracy_areas:
        review += review_detections(predicted, scored_truth, accuracy_areas, classes, detection_type)
    forgotten = unoutlined_detections(
        [(d.geometry, d.class_name) for d in in_training], training_outlines, training_areas, detection_type
    )
    return ImageEvaluation(
        testing=testing,
        accuracy=accuracy,
        truth=scored_truth,
        accuracy_areas=list(accuracy_areas),
        review=review + forgotten,
        unoutlined=len(forgotten),
        predict_s=predict_s,
    )


def evaluation_metrics(
    evaluations: Sequence[ImageEvaluation], classes: Sequence[str], detection_type: str
) -> dict[str, Any]:
    """A training run's ``metrics``: ``score_detections`` over every image's accuracy areas at once, plus
    ``score`` (overall F1 in percent) and ``unoutlined``; without any accuracy area, a note saying how to
    get a score instead."""
    unoutlined = sum(e.unoutlined for e in evaluations)
    areas = [a for e in evaluations for a in e.accuracy_areas]
    if not areas:
        return {"score": None, "unoutlined": unoutlined, "note": NO_ACCURACY_AREA_NOTE}
    predicted = [(d.geometry, d.class_name) for e in evaluations for d in e.accuracy]
    truth = [o for e in evaluations for o in e.truth]
    scores = score_detections(predicted, truth, areas, classes, detection_type)
    overall = scores.get("overall", {})
    return {**scores, "score": round(100 * float(overall.get("f1", 0.0)), 2), "unoutlined": unoutlined}
