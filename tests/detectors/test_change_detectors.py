"""Change detectors in the platform: the kind, pairs chosen with a plain-words check, training and detection
refusing what cannot be compared, and each id scoped to the caller's organization."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from django.urls import reverse
from django.utils import timezone

from detectors.models import (
    DetectionCell,
    DetectionRun,
    Detector,
    DetectorClass,
    DetectorImage,
    RunStatus,
    TrainingRun,
)
from imagery.ingest import ingest_image
from imagery.models import Image
from picterra.organizations.models import Project
from workers.ml.synthetic_change import tiny_pair
from workers.pipelines import run_training


def upload(client, project: Project, path: Path, ingest: bool = True) -> str:
    """POST the file as a new image of ``project``; ingested here unless ``ingest`` is False (then `uploaded`)."""
    with path.open("rb") as fh:
        response = client.post(reverse("v1:image-list"), {"project": str(project.pk), "file": fh}, format="multipart")
    assert response.status_code == 201, response.json()
    if ingest:
        ingest_image(response.json()["id"])
        assert Image.objects.get(pk=response.json()["id"]).status == Image.Status.READY
    return response.json()["id"]


def write_like(path: Path, template: Path, bands: int | None = None, shift_m: float = 0.0) -> Path:
    """A copy of ``template`` with another band count, or moved east by ``shift_m`` metres."""
    with rasterio.open(template) as src:
        data, profile = src.read(), src.profile
    if bands is not None:
        data = data[:bands]
        profile.update(count=bands, photometric="MINISBLACK")
    t = profile["transform"]
    profile["transform"] = Affine(t.a, t.b, t.c + shift_m, t.d, t.e, t.f)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ascontiguousarray(data))
    return path


@pytest.fixture
def pair_files(tmp_path) -> dict[str, Path]:
    before, after = tiny_pair(seed=0, size=128).write(tmp_path / "pair")
    return {
        "before": before,
        "after": after,
        "one_band": write_like(tmp_path / "one_band.tif", after, bands=1),
        "elsewhere": write_like(tmp_path / "elsewhere.tif", after, shift_m=10_000.0),
    }


@pytest.fixture
def change_detector(personas, client_for) -> dict:
    client = client_for(personas.owner)
    response = client.post(
        reverse("v1:detector-list"),
        {"organization": str(personas.organization.pk), "name": "New buildings", "kind": "change"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["kind"] == "change"
    return response.json()


def attach(client, detector: dict, image: str, second: str | None = None):
    body = {"detector": detector["id"], "image": image, **({"second_image": second} if second else {})}
    return client.post(reverse("v1:detectorimage-list"), body, format="json")


def second_image_error(response) -> str:
    return response.json()["errors"]["second_image"][0]


def test_a_detector_is_single_image_unless_created_as_change_and_keeps_its_kind(personas, client_for, change_detector):
    client = client_for(personas.owner)
    single = client.post(
        reverse("v1:detector-list"), {"organization": str(personas.organization.pk), "name": "Trees"}, format="json"
    ).json()
    assert single["kind"] == "single"
    url = reverse("v1:detector-detail", args=[change_detector["id"]])
    changed = client.patch(url, {"kind": "single"}, format="json")
    assert changed.status_code == 400 and "chosen when it is created" in changed.json()["errors"]["kind"][0]
    renamed = client.patch(url, {"name": "x"}, format="json")
    assert renamed.status_code == 200 and renamed.json()["kind"] == "change"
    bad = client.post(
        reverse("v1:detector-list"),
        {"organization": str(personas.organization.pk), "name": "x", "kind": "triple"},
        format="json",
    )
    assert bad.status_code == 400 and "kind" in bad.json()["errors"]


def test_choosing_a_pair_is_checked_at_once_in_plain_words(personas, project, client_for, pair_files, change_detector):
    client = client_for(personas.owner)
    ids = {name: upload(client, project, path) for name, path in pair_files.items()}

    bands = attach(client, change_detector, ids["before"], ids["one_band"])
    assert bands.status_code == 400
    assert second_image_error(bands).startswith("The two images have different numbers of bands (3 and 1)")
    apart = attach(client, change_detector, ids["before"], ids["elsewhere"])
    assert apart.status_code == 400 and second_image_error(apart).startswith("The two images do not overlap")
    itself = attach(client, change_detector, ids["before"], ids["before"])
    assert itself.status_code == 400 and "Choose another image for the second date" in second_image_error(itself)
    assert not DetectorImage.objects.exists()

    # attached first, its second date chosen later (PATCH), as the workspace does
    attached = attach(client, change_detector, ids["before"])
    assert attached.status_code == 201 and attached.json()["second_image"] is None
    url = reverse("v1:detectorimage-detail", args=[attached.json()["id"]])
    refused = client.patch(url, {"second_image": ids["elsewhere"]}, format="json")
    assert refused.status_code == 400 and "do not overlap" in refused.json()["errors"]["second_image"][0]
    paired = client.patch(url, {"second_image": ids["after"]}, format="json")
    assert paired.status_code == 200 and paired.json()["second_image"] == ids["after"]
    moved = client.patch(url, {"image": ids["after"]}, format="json")
    assert moved.status_code == 400
    assert str(DetectorImage.objects.get().image_id) == ids["before"]
    assert str(DetectorImage.objects.get().second_image_id) == ids["after"]


def test_a_single_image_detector_takes_no_second_date(personas, project, client_for, pair_files):
    client = client_for(personas.owner)
    before, after = upload(client, project, pair_files["before"]), upload(client, project, pair_files["after"])
    detector = client.post(
        reverse("v1:detector-list"), {"organization": str(personas.organization.pk), "name": "Trees"}, format="json"
    ).json()
    response = attach(client, detector, before, after)
    assert response.status_code == 400 and "Only a change detector" in response.json()["errors"]["second_image"][0]


def test_another_organizations_image_cannot_be_a_second_date(
    personas, project, client_for, pair_files, change_detector
):
    client = client_for(personas.owner)
    before = upload(client, project, pair_files["before"])
    theirs_project = Project.objects.create(organization=personas.outsider_organization, name="Theirs")
    theirs = upload(client_for(personas.outsider), theirs_project, pair_files["after"])
    response = attach(client, change_detector, before, theirs)
    assert response.status_code == 400 and "does not exist" in response.json()["errors"]["second_image"][0]
    assert not DetectorImage.objects.exists()


def test_training_asks_for_the_second_dates(personas, project, client_for, pair_files, change_detector):
    client = client_for(personas.owner)
    before = upload(client, project, pair_files["before"])
    attach(client, change_detector, before)
    check = client.get(reverse("v1:detector-training-check", args=[change_detector["id"]])).json()
    assert check["problems"] == [
        "Choose the second date of each image: a change detector compares every image with a picture of the same "
        "place at another date (missing for before.tif)."
    ]
    response = client.post(reverse("v1:detector-train", args=[change_detector["id"]]))
    assert response.status_code == 400 and response.json()["problems"] == check["problems"]
    assert not TrainingRun.objects.exists()


def test_a_pair_that_turns_out_wrong_fails_the_training_in_plain_words(
    personas, project, client_for, pair_files, change_detector, settings
):
    """A second date still being processed cannot be checked when chosen: the training says what is wrong."""
    client = client_for(personas.owner)
    before = upload(client, project, pair_files["before"])
    one_band = upload(client, project, pair_files["one_band"], ingest=False)
    assert attach(client, change_detector, before, one_band).status_code == 201
    check = client.get(reverse("v1:detector-training-check", args=[change_detector["id"]])).json()
    assert check["problems"] == ["Wait until these second-date images have finished processing: one_band.tif."]
    ingest_image(one_band)
    detector = Detector.objects.get(pk=change_detector["id"])
    image = Image.objects.get(pk=before)
    _draw_training_inputs(client, detector, image)
    settings.TRAINING_TIME_BUDGET_S = 5
    response = client.post(reverse("v1:detector-train", args=[change_detector["id"]]))
    assert response.status_code == 201, response.json()
    assert run_training(response.json()["id"]) == RunStatus.FAILED
    run = TrainingRun.objects.get(pk=response.json()["id"])
    assert run.error.startswith("The two images have different numbers of bands (3 and 1)")
    assert run.is_finished and not run.weights_key


def _draw_training_inputs(client, detector: Detector, image: Image) -> None:
    """A training area over the image's west half and one outline in it (lon/lat from the footprint)."""
    minx, miny, maxx, maxy = image.footprint.extent
    mid = (minx + maxx) / 2

    def polygon(x0, y0, x1, y1):
        return {"type": "Polygon", "coordinates": [[[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}

    body = {"detector": str(detector.pk), "image": str(image.pk)}
    area = client.post(
        reverse("v1:area-list"), {**body, "kind": "training", "geometry": polygon(minx, miny, mid, maxy)}, format="json"
    )
    assert area.status_code == 201, area.json()
    dx, dy = (maxx - minx) / 20, (maxy - miny) / 20
    cx, cy = (minx + mid) / 2, (miny + maxy) / 2
    outline = client.post(
        reverse("v1:annotation-list"), {**body, "geometry": polygon(cx, cy, cx + dx, cy + dy)}, format="json"
    )
    assert outline.status_code == 201, outline.json()


def _succeeded_version(detector: Detector) -> TrainingRun:
    """A version row to detect with: detection is refused or planned before any weights are read."""
    now = timezone.now()
    return TrainingRun.objects.create(
        detector=detector, version=1, status=RunStatus.SUCCEEDED, config={"classes": ["object"]},
        started_at=now, finished_at=now,
    )


def test_detection_on_a_pair_is_checked_before_anything_is_queued(
    personas, project, client_for, pair_files, change_detector
):
    client = client_for(personas.owner)
    ids = {name: upload(client, project, path) for name, path in pair_files.items()}
    detector = Detector.objects.get(pk=change_detector["id"])
    _succeeded_version(detector)
    url = reverse("v1:detector-detect", args=[detector.pk])

    def detect(**body):
        return client.post(url, {"images": [ids["before"]], **body}, format="json")

    cases = {
        "This is a change detector: choose the second image too": detect(),
        "The two images have different numbers of bands": detect(second_image=ids["one_band"]),
        "The two images do not overlap": detect(second_image=ids["elsewhere"]),
        "A change detector compares one pair of images at a time": client.post(
            url, {"images": [ids["before"], ids["after"]], "second_image": ids["after"]}, format="json"
        ),
    }
    for start, response in cases.items():
        assert response.status_code == 400 and response.json()["detail"].startswith(start), response.json()
    assert not DetectionRun.objects.exists()

    response = detect(second_image=ids["after"])
    assert response.status_code == 201, response.json()
    assert response.json()["second_image"] == ids["after"]
    run = DetectionRun.objects.get()
    assert str(run.second_image_id) == ids["after"] and DetectionCell.objects.filter(run=run).count() == 1

    # a single-image detector given a second image, and another organization's image as the second date
    single = Detector.objects.create(organization=personas.organization, name="Trees")
    DetectorClass.objects.create(detector=single, name="object")
    _succeeded_version(single)
    response = client.post(
        reverse("v1:detector-detect", args=[single.pk]),
        {"images": [ids["before"]], "second_image": ids["after"]},
        format="json",
    )
    assert response.status_code == 400 and response.json()["detail"].startswith("This detector looks at one image")
    theirs = Image.objects.create(
        project=Project.objects.create(organization=personas.outsider_organization, name="Theirs"),
        name="theirs.tif",
    )
    response = detect(second_image=str(theirs.pk))
    assert response.status_code == 400 and "does not exist" in response.json()["errors"]["second_image"][0]
    assert DetectionRun.objects.count() == 1
