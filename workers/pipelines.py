"""The Django-aware side of jobs: load a run, call the ML core, write results back to its row.

Each function is what one Celery task calls. It claims the row with a conditional UPDATE (so a task
delivered twice runs once), keeps the row's progress and heartbeat moving, and ends the run in an
explicit final state with a message a non-expert understands.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import rasterio
from django.conf import settings
from django.contrib.gis.geos import GEOSGeometry
from django.db import transaction
from django.db.models import Count, F, Q, Sum, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from pyproj import Geod

from detectors.models import (
    Area,
    DetectedObject,
    DetectionCell,
    DetectionRun,
    RunStatus,
    TrainingRun,
    detection_run_prefix,  # the key names live beside the rows; still importable from here
    training_run_prefix,
)
from detectors.training_inputs import gather_training_inputs, training_problems, training_stats
from imagery.storage import get_blob_store
from picterra.jobs import enqueue_on_commit, heartbeat

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
LOSS_HISTORY_LENGTH = 300
# run_training's answer when another worker's heartbeat on the run is still fresh.
RUNNING_ELSEWHERE = "running-elsewhere"
GEOD = Geod(ellps="WGS84")


class RunCancelled(Exception):
    pass


def training_summary(card: dict) -> dict:
    """What was trained and for how long, from the model card, for the run's final progress: the Train panel
    shows ``summary`` in plain words. Not in ``stats``: the public API returns those as the spec's counts."""
    done = card.get("training", {})
    # The last progress write may be a few steps behind (writes are throttled): the card has the final step.
    return {
        **({"step": done["steps"]} if "steps" in done else {}),
        "summary": card.get("summary", ""),
        "seconds": done.get("seconds"),
        "stop_reason": done.get("stop_reason", ""),
    }


def _finish(run_id, status: str, **fields) -> None:
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=status, finished_at=timezone.now(), heartbeat_at=timezone.now(), **fields
    )


def _claim_training_run(run_id: str) -> str:
    """Take a queued run, or one whose worker died (heartbeat stale), counting the attempt first.

    A fresh heartbeat may be a live worker or one that died a moment ago: RUNNING_ELSEWHERE asks the
    caller to look again once a heartbeat would have gone stale, so a duplicate message (the sweeper's or
    the broker's) never runs a run twice at once. Past TRAINING_MAX_ATTEMPTS the run is failed: it kept
    stopping its worker (out of memory), and a redelivery would only do that again.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_HEARTBEAT_STALE_S)
    takeable = Q(status=RunStatus.PENDING) | Q(status=RunStatus.RUNNING, heartbeat_at__lt=stale_before)
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().filter(pk=run_id).only("status", "attempts").first()
        if run is None:
            return "deleted"
        if not TrainingRun.objects.filter(takeable, pk=run_id).exists():
            return RUNNING_ELSEWHERE if run.status == RunStatus.RUNNING else run.status
        if run.attempts >= settings.TRAINING_MAX_ATTEMPTS:
            TrainingRun.objects.filter(pk=run_id).update(
                status=RunStatus.FAILED,
                error=f"Training stopped its worker {run.attempts} times; it may need less memory. "
                "Try fewer or smaller images, or contact your administrator.",
                finished_at=now,
                heartbeat_at=now,
            )
            return RunStatus.FAILED
        TrainingRun.objects.filter(pk=run_id).update(
            status=RunStatus.RUNNING,
            started_at=Coalesce(F("started_at"), Value(now)),
            heartbeat_at=now,
            attempts=F("attempts") + 1,
        )
    return RunStatus.RUNNING


def run_training(run_id: str) -> str:
    """Train, save, predict in testing areas and score accuracy areas for one queued training run."""
    from workers.ml.config import DetectorConfig
    from workers.ml.datasets import LabelledImage
    from workers.ml.model_card import save_model
    from workers.ml.train import train_detector

    claimed = _claim_training_run(run_id)
    if claimed != RunStatus.RUNNING:
        return claimed
    run = TrainingRun.objects.select_related("detector").get(pk=run_id)
    detector = run.detector
    inputs = gather_training_inputs(detector)
    problems = training_problems(detector, inputs)
    if problems:
        _finish(run_id, RunStatus.FAILED, error=" ".join(problems))
        return RunStatus.FAILED
    stats = training_stats(detector, inputs)
    class_rows = list(detector.classes.order_by("position", "name").values_list("pk", "name"))
    classes = [name for _, name in class_rows]
    # The classes as this model learns them, with their ids: detection maps the model's outputs back by id,
    # so renaming a class later keeps its objects (detectors.detection.model_class_ids).
    run.config = {**run.config, "classes": classes, "class_ids": [str(pk) for pk, _ in class_rows]}
    TrainingRun.objects.filter(pk=run_id).update(config=run.config)
    config = DetectorConfig.from_dict({**run.config, "classes": classes})
    images = [
        LabelledImage(
            source=item.cog_path,
            training_areas=item.training_areas,
            outlines=item.training_outlines,
            accuracy_areas=item.accuracy_areas,
        )
        for item in inputs
        if item.training_areas
    ]
    history: list[float] = []
    last_write = 0.0

    def progress(step: int, total: int, loss: float) -> None:
        nonlocal last_write
        history.append(round(float(loss), 5))
        if time.monotonic() - last_write < PROGRESS_EVERY_S and step < total:
            return
        last_write = time.monotonic()
        moved = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
            heartbeat_at=timezone.now(),
            progress={
                "step": step,
                "total": total,
                "loss": history[-1],
                "loss_history": history[-LOSS_HISTORY_LENGTH:],
            },
        )
        if not moved:
            raise RunCancelled()

    store = get_blob_store()
    # Each attempt writes under its own prefix: an attempt that loses a race never deletes the winner's files.
    prefix = f"{training_run_prefix(run_id)}{uuid.uuid4().hex[:12]}/"
    beating = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING)
    try:
        # Progress reports beat during the training loop; this covers loading, saving, predicting, scoring.
        with heartbeat(lambda: beating.update(heartbeat_at=timezone.now())), rasterio.Env(**inputs[0].gdal_env):
            model = train_detector(
                images,
                config,
                progress=progress,
                time_budget_s=settings.TRAINING_TIME_BUDGET_S,
                threads=settings.WORKER_TORCH_THREADS,
            )
            with tempfile.TemporaryDirectory(prefix="model-") as tmp:
                save_model(model, Path(tmp))
                keys = {}
                for path in sorted(Path(tmp).iterdir()):
                    keys[path.name] = prefix + path.name
                    store.put_file(keys[path.name], path, move=True)
            metrics = _predict_and_score(run, model, inputs, classes)
    except RunCancelled:
        store.delete_prefix(prefix)
        return RunStatus.CANCELLED
    except ValueError as exc:
        store.delete_prefix(prefix)
        _finish(run_id, RunStatus.FAILED, error=f"Training could not start: {exc}.")
        return RunStatus.FAILED
    except Exception:
        store.delete_prefix(prefix)
        _finish(run_id, RunStatus.FAILED, error="Training failed unexpectedly. Please try again.")
        raise
    weights = next((k for name, k in keys.items() if name.endswith(".safetensors")), "")
    card = next((k for name, k in keys.items() if name.endswith(".json")), "")
    _finish(
        run_id,
        RunStatus.SUCCEEDED,
        metrics=metrics,
        stats=stats,
        weights_key=weights,
        model_card_key=card,
        progress={
            **(TrainingRun.objects.get(pk=run_id).progress or {}),
            "loss_history": history[-LOSS_HISTORY_LENGTH:],
            **training_summary(model.card),
        },
    )
    _keep_only_the_winning_attempt(run_id, prefix)
    return RunStatus.SUCCEEDED


def _keep_only_the_winning_attempt(run_id, prefix: str) -> None:
    """After a worker died mid-run, its attempt may have left files: keep the files the row points to."""
    store = get_blob_store()
    winner = TrainingRun.objects.filter(pk=run_id).values_list("weights_key", flat=True).first() or ""
    if not winner.startswith(prefix):
        store.delete_prefix(prefix)  # another attempt finished first; it owns the run
        return
    attempts = {
        key[: key.index("/", len(training_run_prefix(run_id))) + 1] for key in store.list(training_run_prefix(run_id))
    }
    for other in attempts - {prefix}:
        store.delete_prefix(other)


def _predict_and_score(run: TrainingRun, model, inputs, classes: list[str]) -> dict:
    """Evaluate the trained model on every image as the ML core does for every caller
    (``workers.ml.evaluation``: testing, accuracy and training areas predicted, accuracy areas scored and
    reviewed, unoutlined finds in training areas), then store the testing predictions and the review."""
    from detectors.detection import model_class_ids
    from workers.ml.evaluation import evaluate_image, evaluation_metrics
    from workers.ml.raster_io import image_crs_to_lonlat_many, to_geojson

    class_ids = model_class_ids(run, classes)  # a class deleted meanwhile: its predictions are not stored
    detection_type = run.detector.detection_type
    evaluations, rows, review = [], [], []
    for item in inputs:
        with rasterio.open(item.cog_path) as src:
            evaluation = evaluate_image(
                model,
                src,
                classes=classes,
                detection_type=detection_type,
                accuracy_areas=item.accuracy_areas,
                truth=item.accuracy_outlines,
                testing_areas=item.testing_areas,
                training_areas=item.training_areas,
                training_outlines=item.training_outlines,
            )
        evaluations.append(evaluation)
        kept = [d for d in evaluation.testing if class_ids.get(d.class_name)]
        stored = stored_geometries([d.geometry for d in kept], item.crs)
        for d, (geometry, area_m2) in zip(kept, stored, strict=True):
            rows.append(
                DetectedObject(
                    training_run=run,
                    image_id=item.image_id,
                    detector_class_id=class_ids[d.class_name],
                    geometry=geometry,
                    score=d.score,
                    area_m2=area_m2,
                )
            )
        review += [
            {
                "type": "Feature",
                "geometry": to_geojson(lonlat),
                "properties": {"kind": kind, "class": class_name, "image": item.image_id},
            }
            for (_, class_name, kind), lonlat in zip(
                evaluation.review,
                image_crs_to_lonlat_many([g for g, _, _ in evaluation.review], item.crs),
                strict=True,
            )
        ]
    with transaction.atomic():
        DetectedObject.objects.filter(training_run=run).delete()
        DetectedObject.objects.bulk_create(rows, batch_size=1000)
        TrainingRun.objects.filter(pk=run.pk).update(review={"type": "FeatureCollection", "features": review})
    return evaluation_metrics(evaluations, classes, detection_type)


def stored_geometries(geometries: list, crs) -> list[tuple[GEOSGeometry, float]]:
    """Image-CRS polygons as rows want them: lon/lat GEOS geometry and area in square metres.

    Done for all of a window's objects at once (one reprojection pass, WKB not GeoJSON, planar areas in a
    metric CRS): at thousands of objects per cell this was a large share of a cell's time.
    """
    from pyproj import CRS

    from workers.ml.raster_io import image_crs_to_lonlat_many

    lonlat = image_crs_to_lonlat_many(geometries, crs)
    metric = None
    if crs is not None:
        parsed = CRS.from_user_input(crs)
        if parsed.is_projected and parsed.axis_info[0].unit_name in ("metre", "meter"):
            metric = parsed.axis_info[0].unit_conversion_factor
    rows = []
    for original, g in zip(geometries, lonlat, strict=True):
        area = original.area * metric**2 if metric else abs(GEOD.geometry_area_perimeter(g)[0])
        rows.append((GEOSGeometry(memoryview(g.wkb), srid=4326), area))
    return rows


# --- Detection -----------------------------------------------------------------------------------

_models: dict[str, object] = {}


def load_trained_model(training_run: TrainingRun):
    """The trained network of a version, loaded once per worker process and reused across cells."""
    from workers.ml.model_card import load_model

    key = str(training_run.pk)
    if key not in _models:
        store = get_blob_store()
        folder = training_run.weights_key.rsplit("/", 1)[0] + "/"
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            for blob in store.list(folder):
                with store.open_read(blob) as src, open(Path(tmp) / blob.rsplit("/", 1)[-1], "wb") as dst:
                    dst.write(src.read())
            model = load_model(Path(tmp))
        _models.clear()  # one version at a time per process: bounded memory
        _models[key] = model
    return _models[key]


def cell_stopped_message(times: int) -> str:
    return f"Detecting in this part of the image stopped the worker {times} times; it may need less memory."


def run_detection_cell(cell_id: str) -> str:
    """Detect the objects owned by one grid cell and replace that cell's objects with them."""
    from shapely.ops import unary_union

    from detectors.detection import model_class_ids
    from workers.ml.grid import GridCell
    from workers.ml.predict import predict_window
    from workers.ml.raster_io import window_geometry

    now = timezone.now()
    # The attempt is counted (and updated_at, the cell's heartbeat, moved) before any work, so a worker
    # killed by this cell has counted it; a redelivery past DETECTION_CELL_ATTEMPTS fails the cell.
    claimable = DetectionCell.objects.filter(
        pk=cell_id,
        status__in=(DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING),
        run__status__in=(RunStatus.PENDING, RunStatus.RUNNING),
    )
    claimed = claimable.filter(attempts__lt=settings.DETECTION_CELL_ATTEMPTS).update(
        status=DetectionCell.Status.RUNNING, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        if claimable.exists():
            fail_detection_cell(cell_id, cell_stopped_message(settings.DETECTION_CELL_ATTEMPTS))
            return "failed"
        return "skipped"
    cell = DetectionCell.objects.select_related("run__training_run", "image").get(pk=cell_id)
    run = cell.run
    # A cell runs again (retry of failed cells): the final step that follows starts with a fresh budget.
    DetectionRun.objects.filter(pk=run.pk, finish_attempts__gt=0).update(finish_attempts=0)
    DetectionRun.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(status=RunStatus.RUNNING, started_at=now)
    started = time.monotonic()
    model = load_trained_model(run.training_run)
    store = get_blob_store()
    image = cell.image
    # By the ids saved when the version trained: a renamed class keeps its objects, a deleted one's are skipped.
    class_ids = model_class_ids(run.training_run, list(model.config.classes))
    areas = Area.objects.filter(detector_id=run.detector_id, image=image, kind=Area.Kind.DETECTION)
    col, row, width, height = cell.window
    grid_cell = GridCell(0, 0, rasterio.windows.Window(col, row, width, height))
    beating = DetectionCell.objects.filter(pk=cell_id, status=DetectionCell.Status.RUNNING)
    with (
        heartbeat(lambda: beating.update(updated_at=timezone.now())),
        rasterio.Env(**store.gdal_env()),
        rasterio.open(store.gdal_path(image.cog_key)) as src,
    ):
        owned = window_geometry(grid_cell.window, src.transform)
        if areas.exists():
            region = unary_union([_to_shapely(a.geometry.transform(image.crs, clone=True)) for a in areas])
            owned = owned.intersection(region)
        padded = grid_cell.padded(cell.margin, src.width, src.height)
        found = predict_window(model, src, padded)
    import shapely

    # A neighbouring cell owns the objects whose representative point falls in its window.
    points = shapely.point_on_surface([d.geometry for d in found]) if found else []
    inside = shapely.contains(owned, points)
    found = [d for d, here in zip(found, inside, strict=True) if here and class_ids.get(d.class_name)]
    rows = [
        DetectedObject(
            detection_run=run,
            image=image,
            detector_class_id=class_ids[d.class_name],
            cell=cell.key,
            geometry=geometry,
            score=d.score,
            area_m2=area_m2,
        )
        for d, (geometry, area_m2) in zip(found, stored_geometries([d.geometry for d in found], image.crs), strict=True)
    ]
    seconds = time.monotonic() - started
    with transaction.atomic():
        if not DetectionCell.objects.filter(pk=cell_id, status=DetectionCell.Status.RUNNING).exists():
            return "cancelled"
        DetectedObject.objects.filter(detection_run=run, image=image, cell=cell.key).delete()
        DetectedObject.objects.bulk_create(rows, batch_size=1000)
        DetectionCell.objects.filter(pk=cell_id).update(
            status=DetectionCell.Status.DONE,
            objects_count=len(rows),
            seconds=seconds,
            error="",
            updated_at=timezone.now(),
        )
        _refresh_run_progress(run.pk)
    _finish_when_no_cell_left(run.pk)
    return "done"


def fail_detection_cell(cell_id: str, message: str) -> None:
    """A cell that kept failing: record why, and let the run finish without it."""
    with transaction.atomic():
        cell = DetectionCell.objects.filter(pk=cell_id).first()
        if cell is None:
            return
        DetectionCell.objects.filter(pk=cell_id).exclude(status=DetectionCell.Status.CANCELLED).update(
            status=DetectionCell.Status.FAILED, error=message[:2000]
        )
        _refresh_run_progress(cell.run_id)
    _finish_when_no_cell_left(cell.run_id)


def release_detection_cell(cell_id: str) -> None:
    """Put a cell back in the queue's hands before a retry."""
    DetectionCell.objects.filter(pk=cell_id, status=DetectionCell.Status.RUNNING).update(
        status=DetectionCell.Status.PENDING
    )


def _refresh_run_progress(run_id, force: bool = False) -> None:
    """Counters derived from the cells (never incremented), so replays cannot skew them.

    Aggregating every cell after every cell is quadratic in cells (165,000 of them at country scale), so
    the counters are recomputed at most every PROGRESS_EVERY_S, and always for the last cell.
    """
    run = DetectionRun.objects.get(pk=run_id)
    now = timezone.now()
    recent = run.heartbeat_at and (now - run.heartbeat_at).total_seconds() < PROGRESS_EVERY_S
    if recent and not force and _cells_left(run_id):
        return
    counts = dict(
        DetectionCell.objects.filter(run_id=run_id)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    done = DetectionCell.objects.filter(run_id=run_id, status=DetectionCell.Status.DONE)
    totals = done.aggregate(objects=Sum("objects_count"), pixels=Sum("pixels"))
    pixels = totals["pixels"] or 0
    elapsed = max(1e-6, (now - (run.started_at or run.created_at)).total_seconds())
    remaining = counts.get(DetectionCell.Status.PENDING, 0) + counts.get(DetectionCell.Status.RUNNING, 0)
    mp_done = pixels / 1e6
    rate = mp_done / elapsed
    total_mp = float(run.progress.get("megapixels_total", 0.0))
    DetectionRun.objects.filter(pk=run_id).update(
        cells_done=counts.get(DetectionCell.Status.DONE, 0),
        cells_failed=counts.get(DetectionCell.Status.FAILED, 0),
        objects_count=totals["objects"] or 0,
        heartbeat_at=now,
        progress={
            **run.progress,
            "megapixels_done": round(mp_done, 3),
            "megapixels_per_second": round(rate, 4),
            "seconds_left": round((total_mp - mp_done) / rate, 1) if rate > 0 and remaining else 0,
        },
    )


def _cells_left(run_id) -> bool:
    return DetectionCell.objects.filter(
        run_id=run_id, status__in=(DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING)
    ).exists()


def _finish_when_no_cell_left(run_id) -> None:
    """Checked after the cell's transaction committed: two cells ending at once each see the other's
    result, so the last one is never missed (both may ask; finish_detection runs once)."""
    from workers.tasks import finish_detection

    if not _cells_left(run_id):
        _refresh_run_progress(run_id, force=True)
        enqueue_on_commit(finish_detection, str(run_id))


def _claim_finish(run_id: str) -> str:
    """Count a start of the final step, unless another one is working (its heartbeat is fresh).

    A worker killed while merging or exporting has counted its attempt; its redelivered message waits
    for the heartbeat to go stale (RUNNING_ELSEWHERE), then takes over, or past DETECTION_FINISH_ATTEMPTS
    fails the run. Duplicates (two cells ending at once each queue the final step) do not count twice.
    """
    now = timezone.now()
    stale_before = now - timedelta(seconds=settings.JOB_HEARTBEAT_STALE_S)
    active = (RunStatus.PENDING, RunStatus.RUNNING)
    if _cells_left(run_id):
        return DetectionRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "deleted"
    free = Q(finish_attempts=0) | Q(heartbeat_at__lt=stale_before) | Q(heartbeat_at__isnull=True)
    runs = DetectionRun.objects.filter(free, pk=run_id, status__in=active)
    if runs.filter(finish_attempts__lt=settings.DETECTION_FINISH_ATTEMPTS).update(
        finish_attempts=F("finish_attempts") + 1, heartbeat_at=now
    ):
        return RunStatus.RUNNING
    if runs.update(
        status=RunStatus.FAILED,
        error=f"Putting the results together stopped the worker {settings.DETECTION_FINISH_ATTEMPTS} times; "
        "it may need less memory. Please contact your administrator.",
        finished_at=now,
        heartbeat_at=now,
    ):
        return RunStatus.FAILED
    status = DetectionRun.objects.filter(pk=run_id).values_list("status", flat=True).first()
    return RUNNING_ELSEWHERE if status in active else status or "deleted"


def finish_detection(run_id: str) -> str:
    """All cells ended: write the exports and give the run its final state. Safe to run twice, at once too:
    the start is claimed (and counted), so one caller works at a time; the heartbeat moves throughout.
    No transaction is open while merging and exporting (SpatiaLite would block every other writer for the
    whole export): only the final status update is one, short, with the run's row locked."""
    claimed = _claim_finish(run_id)
    if claimed != RunStatus.RUNNING:
        return claimed
    beating = DetectionRun.objects.filter(pk=run_id, status__in=(RunStatus.PENDING, RunStatus.RUNNING))
    try:
        with heartbeat(lambda: beating.update(heartbeat_at=timezone.now())):
            return _finish_claimed_run(run_id)
    except Exception:
        DetectionRun.objects.filter(pk=run_id, status__in=(RunStatus.PENDING, RunStatus.RUNNING)).update(
            status=RunStatus.FAILED,
            error="Putting the results together failed. Please run the detection again.",
            finished_at=timezone.now(),
        )
        raise


def _finish_claimed_run(run_id) -> str:
    """Merge, export, then end the run. A retry redoes the same work: the merge leaves merged objects
    alone and the exports overwrite the same keys, so nothing is doubled or left behind."""
    active = (RunStatus.PENDING, RunStatus.RUNNING)
    unfinished = (DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING)
    run = DetectionRun.objects.filter(pk=run_id).first()
    if run is None or run.status not in active:
        return run.status if run else "deleted"
    if run.cells.filter(status__in=unfinished).exists():
        return run.status
    merge_border_objects(run)  # its own short transaction per image
    keys = write_detection_exports(run)  # files and blobs, outside any transaction
    with transaction.atomic():
        run = DetectionRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status not in active:
            return run.status if run else "deleted"  # cancelled (or ended by another caller) meanwhile
        if run.cells.filter(status__in=unfinished).exists():
            return run.status
        return _end_run(run, keys)


def _end_run(run: DetectionRun, keys: dict[str, str]) -> str:
    """The final state from the cells, in the caller's transaction."""
    cells = run.cells.all()
    failed = cells.filter(status=DetectionCell.Status.FAILED).count()
    if failed == 0:
        status, error = RunStatus.SUCCEEDED, ""
    elif failed < cells.count():
        status, error = (
            RunStatus.PARTIAL,
            f"{failed} of {cells.count()} grid cells failed; retry them to complete the run.",
        )
    else:
        status, error = RunStatus.FAILED, "Every grid cell failed: " + (cells.first().error or "unknown error")
    DetectionRun.objects.filter(pk=run.pk).update(
        status=status,
        error=error,
        result_keys=keys,
        # Counted, not derived from the cells: the merge removed rows the cells had counted.
        objects_count=DetectedObject.objects.filter(detection_run=run).count(),
        finished_at=timezone.now(),
        heartbeat_at=timezone.now(),
    )
    return status


def merge_border_objects(run: DetectionRun) -> int:
    """Join objects that neighbouring cells each reported in part; returns how many rows were merged away."""
    from shapely import union_all

    from workers.ml.grid import merge_across_cells

    merged = 0
    for image in run.images.all():
        near_borders = _cell_border_strips(run, image)
        if near_borders is None:
            continue  # a single cell: nothing to merge
        objects = list(
            DetectedObject.objects.filter(detection_run=run, image=image, geometry__intersects=near_borders).order_by(
                "id"
            )
        )
        shapes = [_to_shapely(o.geometry) for o in objects]
        groups = merge_across_cells(shapes, [o.cell for o in objects], [str(o.detector_class_id) for o in objects])
        with transaction.atomic():
            for group in groups:
                keeper, others = objects[group[0]], [objects[i] for i in group[1:]]
                union = union_all([shapes[i] for i in group])
                if union.geom_type != "Polygon":
                    union = max(getattr(union, "geoms", [union]), key=lambda g: g.area)
                keeper.geometry = GEOSGeometry(memoryview(union.wkb), srid=4326)
                keeper.score = max(objects[i].score for i in group)
                keeper.area_m2 = abs(GEOD.geometry_area_perimeter(union)[0])
                keeper.save(update_fields=["geometry", "score", "area_m2"])
                DetectedObject.objects.filter(pk__in=[o.pk for o in others]).delete()
                merged += len(others)
    return merged


def _cell_border_strips(run: DetectionRun, image) -> GEOSGeometry | None:
    """Lon/lat strips along the borders between an image's cells, as wide as the cells' margin each side.

    Only objects there can have been seen by two cells: an object owned by one cell that overlaps one
    owned by its neighbour lies within the largest object's size (<= the margin) of their shared border.
    Merging only these keeps the merge proportional to the border length, not to the number of objects.
    """
    from shapely import LineString, affinity, buffer, union_all

    from workers.ml.raster_io import image_crs_to_lonlat

    cells = list(run.cells.filter(image=image).values_list("window", "margin"))
    lines = []
    for (col, row, width, height), _ in cells:
        if col + width < image.width:
            lines.append(LineString([(col + width, row), (col + width, row + height)]))
        if row + height < image.height:
            lines.append(LineString([(col, row + height), (col + width, row + height)]))
    if not lines:
        return None
    margin = max(m for _, m in cells) + 2
    strips_px = union_all([buffer(line, margin) for line in lines])
    t = image.pixel_transform
    strips = affinity.affine_transform(strips_px, [t.a, t.b, t.d, t.e, t.c, t.f])
    lonlat = image_crs_to_lonlat(strips, image.crs)
    return GEOSGeometry(memoryview(lonlat.wkb), srid=4326)


def write_detection_exports(run: DetectionRun) -> dict[str, str]:
    """GeoJSON (lon/lat Polygons), GeoPackage and per-class/per-area counts (CSV) in the blob store."""
    from detectors.exports import write_exports

    store = get_blob_store()
    prefix = detection_run_prefix(run.pk)
    with tempfile.TemporaryDirectory(prefix="exports-") as tmp:
        files = write_exports(run, Path(tmp))
        keys = {}
        for fmt, path in files.items():
            keys[fmt] = prefix + path.name
            store.put_file(keys[fmt], path, move=True)
    return keys


def _to_shapely(geometry):
    from shapely import wkb as shapely_wkb

    return shapely_wkb.loads(bytes(geometry.wkb))
