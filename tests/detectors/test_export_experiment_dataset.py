"""A detector exported with `manage.py export_experiment_dataset` loads as an experiment dataset, unchanged."""

from __future__ import annotations

import json
from io import StringIO

import pytest
import rasterio
from django.core.management import CommandError, call_command
from shapely.ops import unary_union

from workers.experiments.repository import project_dataset


@pytest.mark.django_db(transaction=True)
def test_export_a_detector_and_load_it_as_an_experiment_dataset(trainable, tmp_path):
    _, detector, image_id = trainable
    out = StringIO()
    call_command("export_experiment_dataset", detector["id"], "--output", str(tmp_path), stdout=out)
    folder = tmp_path / "trees"
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["classes"] == ["tree"] and meta["detection_type"] == "count"
    assert meta["source"]["image"] == image_id
    assert len(meta["training_areas"]) == 1 and len(meta["accuracy_areas"]) == 1
    with rasterio.open(folder / "image.tif") as src:
        assert (src.width, src.height) == (512, 512) and src.overviews(1) is not None

    dataset = project_dataset(folder)
    assert dataset.name == "project/trees"
    assert len(dataset.item.outlines) == len(meta["outlines"]) > 10
    assert len(dataset.truth) == len(meta["truth"]) > 3
    # What is scored is never trained on: training areas and accuracy areas do not overlap.
    trained = unary_union(dataset.item.training_areas)
    assert trained.intersection(unary_union(dataset.item.accuracy_areas)).area < 1e-6 * trained.area
    assert all(g.intersects(unary_union(dataset.item.accuracy_areas)) for g, _ in dataset.truth)
    assert "project/trees" in out.getvalue()


@pytest.mark.django_db
def test_export_of_an_unknown_detector_says_so():
    with pytest.raises(CommandError, match="No detector with id 'nope'"):
        call_command("export_experiment_dataset", "nope")
