"""Starting, cancelling and retrying detection runs: plan the grid cells, queue one job per cell."""

from __future__ import annotations

import math

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from pyproj import Geod
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from detectors.models import (
    Annotation,
    Area,
    DetectionCell,
    DetectionRun,
    Detector,
    DetectorClass,
    RunStatus,
    TrainingRun,
)
from detectors.pairs import check_image_pair
from detectors.training_inputs import to_image_crs
from imagery.models import Image
from picterra.jobs import Job, enqueue
from workers.ml.grid import plan_grid_cells

GEOD = Geod(ellps="WGS84")
MIN_MARGIN_PX, MAX_MARGIN_PX = 32, 1024


class CannotDetect(Exception):
    pass


def detection_version(detector: Detector, training_run: TrainingRun | None = None) -> TrainingRun:
    """The trained version to use: the one asked for, else the detector's chosen one, else the latest."""
    run = training_run or detector.active_training_run
    if run is None:
        run = detector.training_runs.filter(status=RunStatus.SUCCEEDED).order_by("-version").first()
    if run is None or run.status != RunStatus.SUCCEEDED or run.detector_id != detector.pk:
        raise CannotDetect("Train the detector first: it has no successfully trained version yet.")
    return run


def model_class_ids(training_run: TrainingRun, model_classes: list[str]) -> dict[str, str | None]:
    """Each class the version learnt (by its name then) → the id of that class now, or None if deleted.

    Matched by the ids saved when the version trained (`config["class_ids"]`), never by today's names: a
    class renamed since keeps its objects under its new name, and a class deleted since has nothing to
    hold its objects, so they are skipped (the user removed it; the other classes' results still stand).
    Versions trained before ids were saved fall back to today's names.
    """
    config = training_run.config or {}
    names, ids = config.get("classes") or [], config.get("class_ids") or []
    rows = DetectorClass.objects.filter(detector_id=training_run.detector_id).values_list("pk", "name")
    current = {str(pk): name for pk, name in rows}
    saved = dict(zip(names, (str(i) for i in ids), strict=True)) if len(names) == len(ids) and ids else {}
    by_name = {name: pk for pk, name in current.items()}
    mapping: dict[str, str | None] = {}
    for name in model_classes:
        if saved:
            mapping[name] = saved[name] if saved.get(name) in current else None
        else:
            mapping[name] = by_name.get(name)
    return mapping


def largest_object_m(detector: Detector) -> float:
    """Diameter of the largest outline drawn for the detector, in metres (0 when none)."""
    largest = 0.0
    for outline in Annotation.objects.filter(detector=detector).only("geometry"):
        minx, miny, maxx, maxy = outline.geometry.extent
        width = GEOD.inv(minx, miny, maxx, miny)[2]
        height = GEOD.inv(minx, miny, minx, maxy)[2]
        largest = max(largest, width, height)
    return largest


def _margin_px(image: Image, largest_m: float) -> int:
    pixel_m = image.gsd or 1.0
    return int(min(MAX_MARGIN_PX, max(MIN_MARGIN_PX, math.ceil(1.25 * largest_m / pixel_m) + 32)))


def detection_region(detector_id, image: Image) -> BaseGeometry | None:
    """The union of the detector's detection areas on the image, in the image's CRS; None: the whole image.
    Planning skips the cells outside it and each cell keeps only the objects inside it."""
    areas = Area.objects.filter(detector_id=detector_id, image=image, kind=Area.Kind.DETECTION).only("geometry")
    shapes = [to_image_crs(a.geometry, image.crs) for a in areas]
    return unary_union(shapes) if shapes else None


def plan_cells(run: DetectionRun, image: Image, largest_m: float) -> list[DetectionCell]:
    region = detection_region(run.detector_id, image)
    margin = _margin_px(image, largest_m)
    cells = plan_grid_cells(image.width, image.height, settings.DETECTION_CELL_SIZE, region, image.pixel_transform)
    return [
        DetectionCell(
            run=run,
            image=image,
            key=c.key,
            margin=margin,
            window=[int(c.window.col_off), int(c.window.row_off), int(c.window.width), int(c.window.height)],
            pixels=int(c.window.width) * int(c.window.height),
        )
        for c in cells
    ]


def check_detection_pair(detector: Detector, images: list[Image], second_image: Image | None) -> None:
    """A change detector compares one image with its second date; a single-image detector takes none."""
    if detector.kind != Detector.Kind.CHANGE:
        if second_image is not None:
            raise CannotDetect(
                "This detector looks at one image at a time: a second image is only for change detectors."
            )
        return
    if second_image is None:
        raise CannotDetect(
            "This is a change detector: choose the second image too (the same place at another date) to compare "
            "with the first."
        )
    if len(images) != 1:
        raise CannotDetect("A change detector compares one pair of images at a time: choose one image and its "
                           "second date.")
    if second_image.status != Image.Status.READY:
        raise CannotDetect(f"Wait until this image has finished processing: {second_image.name}.")
    try:
        check_image_pair(images[0], second_image)
    except ValueError as exc:  # ImagePairError: plain words
        raise CannotDetect(str(exc)) from None


def start_detection(
    detector: Detector,
    images: list[Image],
    user,
    training_run: TrainingRun | None = None,
    second_image: Image | None = None,
) -> DetectionRun:
    """Plan and queue a detection; ``second_image``: a change detector's other date (one image then)."""
    version = detection_version(detector, training_run)
    learnt = (version.config or {}).get("classes") or []
    if learnt and not any(model_class_ids(version, learnt).values()):
        raise CannotDetect(
            "Every class this version was trained for has been deleted since. Add the classes you want to "
            "find, outline a few examples and train again."
        )
    not_ready = [i.name for i in images if i.status != Image.Status.READY]
    if not images:
        raise CannotDetect("Choose at least one image to detect on.")
    if not_ready:
        raise CannotDetect(f"Wait until these images have finished processing: {', '.join(not_ready)}.")
    check_detection_pair(detector, images, second_image)
    largest = largest_object_m(detector)
    with transaction.atomic():
        run = DetectionRun.objects.create(
            detector=detector, training_run=version, second_image=second_image, created_by=user
        )
        run.images.set(images)
        cells = [cell for image in images for cell in plan_cells(run, image, largest)]
        DetectionCell.objects.bulk_create(cells, batch_size=1000)
        run.cells_total = len(cells)
        run.progress = {"megapixels_total": round(sum(c.pixels for c in cells) / 1e6, 3)}
        run.save(update_fields=["cells_total", "progress"])
        if not cells:
            run.status, run.finished_at = RunStatus.SUCCEEDED, timezone.now()
            run.save(update_fields=["status", "finished_at"])
        for cell in DetectionCell.objects.filter(run=run).values_list("pk", flat=True):
            enqueue(Job.DETECT_CELL, cell)
    return run


def cancel_detection(run: DetectionRun) -> bool:
    with transaction.atomic():
        stopped = DetectionRun.objects.filter(pk=run.pk, status__in=(RunStatus.PENDING, RunStatus.RUNNING)).update(
            status=RunStatus.CANCELLED, finished_at=timezone.now()
        )
        if stopped:
            # Queued cells find their row cancelled and do nothing: that is how they are revoked.
            run.cells.filter(status=DetectionCell.Status.PENDING).update(status=DetectionCell.Status.CANCELLED)
    return bool(stopped)


def retry_failed_cells(run: DetectionRun) -> int:
    """Queue the failed cells of a partial run again."""
    with transaction.atomic():
        if not DetectionRun.objects.filter(pk=run.pk, status__in=(RunStatus.PARTIAL, RunStatus.FAILED)).update(
            status=RunStatus.RUNNING, finished_at=None, error="", heartbeat_at=timezone.now()
        ):
            return 0
        failed = list(run.cells.filter(status=DetectionCell.Status.FAILED).values_list("pk", flat=True))
        run.cells.filter(pk__in=failed).update(status=DetectionCell.Status.PENDING, attempts=0, error="")
        for cell in failed:
            enqueue(Job.DETECT_CELL, cell)
    return len(failed)
