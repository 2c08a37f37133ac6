"""Where to label next after a training: computed over the detector's images, stored on the version, served by
the API to its organization only; a failure there stores none and never fails the training."""

from __future__ import annotations

import json
import logging

from django.contrib.gis.geos import GEOSGeometry
from django.urls import reverse

from detectors.models import Area, Detector, TrainingRun
from detectors.training_inputs import gather_training_inputs
from imagery.models import Image
from workers import pipelines
from workers.ml.evaluation import ImageEvaluation


def test_suggestions_are_stored_ranked_outside_the_drawn_areas_and_served(trained_version, personas, client_for):
    client, detector_data, image_id, version = trained_version
    inputs = gather_training_inputs(Detector.objects.get(pk=detector_data["id"]))
    model = pipelines.load_trained_model(version)
    pipelines.store_suggestions(version.pk, model, inputs, [ImageEvaluation() for _ in inputs])

    served = client.get(reverse("v1:trainingrun-suggestions", args=[version.pk])).json()
    assert served == TrainingRun.objects.get(pk=version.pk).suggestions
    features = served["features"]
    assert 1 <= len(features) <= 5
    assert [f["properties"]["rank"] for f in features] == list(range(1, len(features) + 1))
    scores = [f["properties"]["score"] for f in features]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    footprint = Image.objects.get(pk=image_id).footprint
    areas = Area.objects.filter(detector_id=detector_data["id"], kind__in=("training", "accuracy"))
    drawn = [a.geometry for a in areas]
    for f in features:
        assert f["properties"]["image"] == image_id and f["properties"]["reason"].endswith(".")
        square = GEOSGeometry(json.dumps(f["geometry"]), srid=4326)
        assert footprint.buffer(1e-7).contains(square)
        assert all(square.intersection(a).area <= 0.05 * square.area for a in drawn)
    outsider = client_for(personas.outsider)
    assert outsider.get(reverse("v1:trainingrun-suggestions", args=[version.pk])).status_code == 404


def test_a_failure_stores_no_suggestions_and_says_so_in_the_log(trained_version, monkeypatch, caplog):
    client, detector_data, _, version = trained_version
    TrainingRun.objects.filter(pk=version.pk).update(suggestions={"type": "FeatureCollection", "features": [{}]})

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(pipelines, "next_areas", broken)
    with caplog.at_level(logging.ERROR, logger="workers.pipelines"):
        pipelines.store_suggestions(version.pk, None, [], [])  # returns: the training goes on
    assert "Could not compute where to label next" in caplog.text
    assert TrainingRun.objects.get(pk=version.pk).suggestions == {}
    served = client.get(reverse("v1:trainingrun-suggestions", args=[version.pk])).json()
    assert served == {"type": "FeatureCollection", "features": []}
