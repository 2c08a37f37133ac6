"""The experiment framework measures exactly what the platform scores.

One platform training run (``run_training`` in this process, on the ``trainable`` fixture's detector) is
scored again by the experiment runner's path: its stored weights loaded as detection loads them, the same
image and areas as an ``ExperimentDataset``. Loading the stored weights (rather than training the runner
with the same seed) keeps the comparison exact: training under a time budget stops after a number of steps
that depends on the machine's speed, so two trainings need not end with the same weights.
"""

from __future__ import annotations

import pytest
import rasterio

from detectors.models import Detector
from detectors.training_inputs import gather_training_inputs
from tests.detectors.conftest import train_in_this_process
from workers.experiments.repository import ExperimentDataset
from workers.experiments.runner import evaluate_on_dataset
from workers.ml.datasets import LabelledImage
from workers.pipelines import load_trained_model


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_experiment_runner_scores_a_platform_version_as_its_training_run_did(trainable, settings):
    client, detector_data, _ = trainable
    # A budget too short for any training: it stops at the least a platform training runs (recipe.min_steps),
    # a model that already finds most trees, so the scores compared are not all zeros.
    run = train_in_this_process(client, detector_data["id"], settings, budget_s=1)
    detector = Detector.objects.get(pk=detector_data["id"])
    stored = run.metrics
    assert stored["overall"]["n_pred"] > 0 and stored["overall"]["n_true"] > 3  # a score worth comparing

    (item,) = [i for i in gather_training_inputs(detector) if i.accuracy_areas]
    dataset = ExperimentDataset(
        name="project/trees",
        item=LabelledImage(item.cog_path, item.training_areas, item.training_outlines, item.accuracy_areas),
        truth=item.accuracy_outlines,
        classes=run.config["classes"],
        detection_type=detector.detection_type,
    )
    model = load_trained_model(run)
    with rasterio.Env(**item.gdal_env):
        measured, _ = evaluate_on_dataset(model, dataset)

    for key in ("precision", "recall", "f1", "f1_iou40", "count_error", "n_pred", "n_true", "matches"):
        assert measured["overall"][key] == stored["overall"][key], key
    # Everything else too, but the training areas' check, which the experiments skip.
    assert {k: v for k, v in measured.items() if k != "unoutlined"} == {
        k: v for k, v in stored.items() if k != "unoutlined"
    }
