"""What detector and worker tests share: a detector ready to train, and a trained version of it.

Training through the platform takes a worker tens of seconds, and most tests only need *a* trained
version to detect with. So the model is trained once per session, by the ML core alone, on the same
generated image and drawings `trainable` puts in the database, for a fixed number of steps (not a time
budget: a loaded machine gets the same model). Each test then gets a succeeded version row of its own
whose files are a copy of that model in the test's blob store. Tests that watch training train for real.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient
from shapely.geometry import box, mapping
from shapely.geometry.base import BaseGeometry

from detectors.models import Detector, RunStatus, TrainingRun, training_run_prefix
from detectors.training import detector_config
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.sample import SampleRaster, write_sample_geotiff
from imagery.storage import get_blob_store
from tests.conftest import wait_for
from workers.ml.config import DetectorConfig, Recipe
from workers.ml.datasets import LabelledImage
from workers.ml.model_card import save_model
from workers.ml.raster_io import image_crs_to_lonlat
from workers.ml.train import train_detector
from workers.pipelines import run_training

# The image `trainable` uploads: the same pixels and trees in every test.
TREES_IMAGE = {"size": 512, "trees": 40, "seed": 3}
# Optimiser steps of the session's model: the fewest a platform training ever runs, which is what a test's
# short time budget gets on two CPU cores; that model finds 36 of the image's 40 trees.
SESSION_MODEL_STEPS = Recipe().min_steps


def write_trees_image(path: Path) -> SampleRaster:
    return write_sample_geotiff(path, **TREES_IMAGE)


def trees_image_areas(sample: SampleRaster) -> dict[str, BaseGeometry]:
    """Training on the left 60 % of the image; accuracy (bottom) and testing (top) on the rest; image CRS."""
    left, top = sample.transform.c, sample.transform.f
    size = TREES_IMAGE["size"] * sample.transform.a
    return {
        "training": box(left, top - size, left + 0.6 * size, top),
        "accuracy": box(left + 0.6 * size, top - size, left + size, top - 0.5 * size),
        "testing": box(left + 0.6 * size, top - 0.5 * size, left + size, top),
    }


@pytest.fixture
def trainable(personas, project, client_for, tmp_path) -> tuple[APIClient, dict, str]:
    """A ready image of trees with a detector, training/testing/accuracy areas and every tree outlined."""
    sample = write_trees_image(tmp_path / "trees.tif")
    client = client_for(personas.owner)
    with sample.path.open("rb") as fh:
        image_id = client.post(
            reverse("v1:image-list"), {"project": str(project.pk), "file": fh}, format="multipart"
        ).json()["id"]
    # With a worker running, the upload's own ingest job may get there first; then this call does nothing.
    ingest_image(image_id)
    image = wait_for(
        lambda: Image.objects.filter(pk=image_id, status__in=(Image.Status.READY, Image.Status.FAILED)).first(),
        timeout=120,
    )
    assert image.status == Image.Status.READY, image.error
    detector = client.post(
        reverse("v1:detector-list"),
        {"organization": str(personas.organization.pk), "name": "Trees", "initial_classes": [{"name": "tree"}]},
        format="json",
    ).json()
    client.post(reverse("v1:detectorimage-list"), {"detector": detector["id"], "image": image_id}, format="json")

    def post(basename, geometry, **extra):
        lonlat = mapping(image_crs_to_lonlat(geometry, sample.crs))
        geojson = {"type": "Polygon", "coordinates": [[list(p) for p in ring] for ring in lonlat["coordinates"]]}
        response = client.post(
            reverse(f"v1:{basename}-list"),
            {"detector": detector["id"], "image": image_id, "geometry": geojson, **extra},
            format="json",
        )
        assert response.status_code == 201, response.json()

    for kind, geometry in trees_image_areas(sample).items():
        post("area", geometry, kind=kind)
    for tree in sample.objects:
        post("annotation", tree)
    return client, detector, image_id


def train_in_this_process(client: APIClient, detector_id: str, settings, budget_s: float) -> TrainingRun:
    """Queue a training through the API and run it here with ``budget_s`` seconds (the queued message stays
    in the broker; a worker started later finds the run done); the succeeded version."""
    settings.TRAINING_TIME_BUDGET_S = budget_s
    response = client.post(reverse("v1:detector-train", args=[detector_id]))
    assert response.status_code == 201, response.json()
    assert run_training(response.json()["id"]) == RunStatus.SUCCEEDED
    return TrainingRun.objects.get(pk=response.json()["id"])


def trees_model_files(root: Path, config: dict) -> Path:
    """The folder of a model trained with ``config`` on the trees image and drawings of `trainable`.

    Trained by the first caller and kept under ``root`` for the rest of the session, one folder per config.
    """
    folder = root / hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    if folder.is_dir():
        return folder
    assert config["classes"] == ["tree"], "the trees image only has trees to learn"
    work = root / f"{folder.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    sample = write_trees_image(work / "trees.tif")
    areas = trees_image_areas(sample)
    # What the platform hands the core (detectors.training_inputs): the training area less the accuracy
    # area, and the outlines that touch it.
    training = areas["training"].difference(areas["accuracy"])
    labelled = LabelledImage(
        source=str(sample.path),
        training_areas=[training],
        outlines=[(tree, "tree") for tree in sample.objects if tree.intersects(training)],
        accuracy_areas=[areas["accuracy"]],
    )
    model = train_detector(
        [labelled],
        DetectorConfig.from_dict(config),
        recipe=Recipe(max_steps=SESSION_MODEL_STEPS),
        time_budget_s=None,
    )
    save_model(model, work / "model")
    (work / "model").rename(folder)
    shutil.rmtree(work)
    return folder


@pytest.fixture
def trained_version(trainable, tmp_path_factory) -> tuple[APIClient, dict, str, TrainingRun]:
    """`trainable` with a succeeded version 1 to detect with (nothing scored it: it has no metrics).

    Its config is what training saves, the detector's with the ids of the classes it learnt; its weights
    and model card are a copy of the session's model, in this test's blob store under the run's own prefix.
    """
    client, detector_data, image_id = trainable
    detector = Detector.objects.get(pk=detector_data["id"])
    config = detector_config(detector)
    files = trees_model_files(tmp_path_factory.getbasetemp() / "trees-models", config)
    class_ids = [str(pk) for pk in detector.classes.order_by("position", "name").values_list("pk", flat=True)]
    now = timezone.now()
    version = TrainingRun.objects.create(
        detector=detector,
        version=1,
        status=RunStatus.SUCCEEDED,
        config={**config, "class_ids": class_ids},
        created_by=detector.created_by,
        attempts=1,
        started_at=now,
        finished_at=now,
        heartbeat_at=now,
    )
    prefix = f"{training_run_prefix(version.pk)}fixture/"
    store = get_blob_store()
    for path in sorted(files.iterdir()):
        store.put_file(prefix + path.name, path)
    version.weights_key = next(prefix + p.name for p in files.iterdir() if p.suffix == ".safetensors")
    version.model_card_key = next(prefix + p.name for p in files.iterdir() if p.suffix == ".json")
    version.save(update_fields=["weights_key", "model_card_key"])
    return client, detector_data, image_id, version
