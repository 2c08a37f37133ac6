"""Starting and cancelling training runs: the row is created first, the queue only nudges a worker."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from detectors.models import Detector, RunStatus, TrainingRun
from detectors.training_inputs import gather_training_inputs, training_problems
from picterra.jobs import Job, enqueue


class NotTrainable(Exception):
    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


def detector_config(detector: Detector) -> dict:
    """The snapshot a training run keeps: the detector's configuration and its classes at the time."""
    return {
        **detector.configuration(),
        "classes": list(detector.classes.order_by("position", "name").values_list("name", flat=True)),
    }


def start_training(detector: Detector, user) -> TrainingRun:
    """Queue a new version of the detector, or say in plain words what is missing first."""
    problems = training_problems(detector, gather_training_inputs(detector))
    if problems:
        raise NotTrainable(problems)
    with transaction.atomic():
        # Lock the detector so two clicks on Train cannot take the same version number.
        Detector.objects.select_for_update().filter(pk=detector.pk).first()
        version = (detector.training_runs.aggregate(v=Max("version"))["v"] or 0) + 1
        run = TrainingRun.objects.create(
            detector=detector, version=version, config=detector_config(detector), created_by=user
        )
        enqueue(Job.TRAIN_DETECTOR, run.pk)
    return run


def cancel_training(run: TrainingRun) -> bool:
    """Stop a queued or running training; the worker notices at its next progress report."""
    return bool(
        TrainingRun.objects.filter(pk=run.pk, status__in=(RunStatus.PENDING, RunStatus.RUNNING)).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now()
        )
    )
