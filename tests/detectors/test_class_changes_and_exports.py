"""Classes renamed or deleted after training, formula-like names in CSV exports, exports outside transactions."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from detectors import exports
from detectors.detection import model_class_ids
from detectors.models import (
    DetectedObject,
    DetectionCell,
    DetectionRun,
    Detector,
    DetectorClass,
    RunStatus,
    TrainingRun,
    detection_run_prefix,
)
from imagery.storage import get_blob_store
from tests.detectors.conftest import train_in_this_process
from tests.detectors.test_border_merge import run_with_pieces  # noqa: F401 - the fixture
from workers.pipelines import finish_detection, run_detection_cell

FORMULA = '=HYPERLINK("http://x")'


# --- classes changed after training ---------------------------------------------------------------------------------


def _version(detector: Detector, classes: list[DetectorClass], **config) -> TrainingRun:
    return TrainingRun.objects.create(
        detector=detector,
        version=1,
        status=RunStatus.SUCCEEDED,
        config={"classes": [c.name for c in classes], "class_ids": [str(c.pk) for c in classes], **config},
    )


@pytest.mark.django_db
def test_the_model_classes_map_by_the_ids_saved_at_training(personas):
    detector = Detector.objects.create(organization=personas.organization, name="pets")
    cat = DetectorClass.objects.create(detector=detector, name="cat", position=0)
    dog = DetectorClass.objects.create(detector=detector, name="dog", position=1)
    version = _version(detector, [cat, dog])
    # After training: the dog class is deleted and the cat class takes its name.
    dog.delete()
    DetectorClass.objects.filter(pk=cat.pk).update(name="dog")
    assert model_class_ids(version, ["cat", "dog"]) == {"cat": str(cat.pk), "dog": None}
    # A version trained before ids were saved can only go by today's names.
    legacy = TrainingRun.objects.create(detector=detector, version=2, status="succeeded", config={"classes": ["cat"]})
    assert model_class_ids(legacy, ["cat", "dog"]) == {"cat": None, "dog": str(cat.pk)}


@pytest.mark.django_db
def test_detecting_with_a_version_whose_classes_were_all_deleted_is_a_plain_400(personas, ready_image, client_for):
    detector = Detector.objects.create(organization=personas.organization, name="trees")
    tree = DetectorClass.objects.create(detector=detector, name="tree")
    _version(detector, [tree])
    client = client_for(personas.owner)
    assert client.delete(reverse("v1:detectorclass-detail", args=[tree.pk])).status_code == 204
    DetectorClass.objects.create(detector=detector, name="tree")  # same name, another class: not what was learnt
    response = client.post(reverse("v1:detector-detect", args=[detector.pk]), {"images": [str(ready_image.pk)]})
    assert response.status_code == 400
    assert "deleted" in response.json()["detail"] and "train again" in response.json()["detail"]
    assert not DetectionRun.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_class_renamed_after_training_keeps_its_objects(trainable, settings):
    """Trained here by the platform (briefly: the model only has to find trees): the class ids it saves are tested."""
    client, detector, image_id = trainable
    version = train_in_this_process(client, detector["id"], settings, budget_s=12)
    tree = DetectorClass.objects.get(detector_id=detector["id"])
    assert version.config["class_ids"] == [str(tree.pk)] and version.config["classes"] == ["tree"]
    renamed = client.patch(reverse("v1:detectorclass-detail", args=[tree.pk]), {"name": FORMULA}, format="json")
    assert renamed.status_code == 200, renamed.json()

    response = client.post(reverse("v1:detector-detect", args=[detector["id"]]), {"images": [image_id]}, format="json")
    assert response.status_code == 201, response.json()
    run_id = response.json()["id"]
    for cell_id in DetectionCell.objects.filter(run_id=run_id).values_list("pk", flat=True):
        assert run_detection_cell(str(cell_id)) == "done"
    assert finish_detection(run_id) == RunStatus.SUCCEEDED
    objects = DetectedObject.objects.filter(detection_run_id=run_id)
    assert objects.count() >= 5
    assert set(objects.values_list("detector_class_id", flat=True)) == {tree.pk}
    run = DetectionRun.objects.get(pk=run_id)
    with get_blob_store().open_read(run.result_keys["csv"]) as fh:
        rows = list(csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8")))
    assert [r["class_name"] for r in rows] == ["'" + FORMULA]  # today's name, shown as text
    assert int(rows[0]["count"]) == objects.count()


# --- CSV: no formulas ------------------------------------------------------------------------------------------------


def test_spreadsheet_safe_cells():
    for risky in ("=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1", "\n1", "  =HYPERLINK(1)", " \t-2"):
        assert exports.spreadsheet_safe(risky) == "'" + risky
    for harmless in ("tree", "a=b", "", "whole image", "detection area 1f2e", "'quoted"):
        assert exports.spreadsheet_safe(harmless) == harmless
    for number in (12, -3.5, 0.0):
        assert exports.spreadsheet_safe(number) == number


@pytest.mark.django_db
def test_csv_counts_show_formula_like_names_as_text(run_with_pieces, tmp_path):  # noqa: F811
    run = run_with_pieces
    DetectorClass.objects.filter(detector=run.detector).update(name=FORMULA)
    image = run.images.get()
    image.name = " -2+3"
    image.save(update_fields=["name"])
    paths = exports.write_exports(run, tmp_path)
    header, *rows = list(csv.reader(paths["csv"].open(newline="")))
    assert header == ["image_id", "image_name", "area", "class_name", "count", "total_area_m2"]
    assert rows == [[str(image.pk), "' -2+3", "whole image", "'" + FORMULA, "12", "12.0"]]


# --- finishing a detection holds no transaction through the exports ------------------------------------------------


def _exported_blobs(run: DetectionRun) -> dict[str, str]:
    store = get_blob_store()
    digests = {}
    for key in store.list(detection_run_prefix(run.pk)):
        with store.open_read(key) as fh:
            digests[key] = hashlib.sha256(fh.read()).hexdigest()
    return digests


@pytest.mark.django_db(transaction=True)
def test_exports_are_written_outside_any_transaction_and_a_retry_rewrites_the_same(
    run_with_pieces,  # noqa: F811
    monkeypatch,
):
    run = run_with_pieces
    seen: list[bool] = []
    write = exports.write_exports

    def recording(run, folder, store=None):
        seen.append(connection.in_atomic_block)
        return write(run, folder, store)

    monkeypatch.setattr(exports, "write_exports", recording)
    assert finish_detection(str(run.pk)) == RunStatus.SUCCEEDED
    assert seen == [False]
    run.refresh_from_db()
    keys, files = run.result_keys, _exported_blobs(run)
    assert set(keys) == {"geojson", "gpkg", "csv"} and set(files) == set(keys.values())
    assert run.objects_count == 7  # the pieces on cell borders merged (tests/detectors/test_border_merge.py)

    # The worker died after the exports, before the run was marked: a redelivery redoes the same.
    stale = timezone.now() - timedelta(days=1)
    DetectionRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, finished_at=None, heartbeat_at=stale)
    assert finish_detection(str(run.pk)) == RunStatus.SUCCEEDED
    assert seen == [False, False]
    run.refresh_from_db()
    assert run.result_keys == keys and run.objects_count == 7
    again = _exported_blobs(run)
    assert set(again) == set(files)  # the same keys, overwritten: nothing doubled, nothing left behind
    for fmt in ("geojson", "csv"):  # (a GeoPackage records when it was written)
        assert again[keys[fmt]] == files[keys[fmt]]
