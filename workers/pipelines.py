"""The Django-aware side of jobs: load a run, call the ML core, write results back to its row.

Each function is what one Celery task calls. It claims the row with a conditional UPDATE (so a task
delivered twice runs once), keeps the row's progress and heartbeat moving, and ends the run in an
explicit final state with a message a non-expert understands.
"""

from __future__ import annotations

import dataclasses
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
from django.db.models import Count, F, Sum
from django.utils import timezone
from pyproj import Geod

from detectors.models import (
    Area,
    DetectedObject,
    DetectionCell,
    DetectionRun,
    DetectorClass,
    RunStatus,
    TrainingRun,
)
from detectors.training_inputs import gather_training_inputs, training_problems, training_stats
from imagery.storage import get_blob_store
from picterra.jobs import enqueue_on_commit

logger = logging.getLogger(__name__)

PROGRESS_EVERY_S = 2.0
LOSS_HISTORY_LENGTH = 300
# run_training's answer when another worker's heartbeat on the run is still fresh.
RUNNING_ELSEWHERE = "running-elsewhere"
GEOD = Geod(ellps="WGS84")


class RunCancelled(Exception):
    pass


def training_run_prefix(run_id) -> str:
    return f"training-runs/{run_id}/"


def _finish(run_id, status: str, **fields) -> None:
    TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING).update(
        status=status, finished_at=timezone.now(), heartbeat_at=timezone.now(), **fields
    )


def run_training(run_id: str) -> str:
    """Train, save, predict in testing areas and score accuracy areas for one queued training run."""
    from workers.ml.config import DetectorConfig
    from workers.ml.datasets import LabelledImage
    from workers.ml.model_card import save_model
    from workers.ml.train import train_detector

    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, status=RunStatus.PENDING).update(
        status=RunStatus.RUNNING, started_at=now, heartbeat_at=now
    )
    if not claimed:
        # Delivered again after a worker died mid-run: the row says running but its heartbeat stopped;
        # start it over. A fresh heartbeat may be a live worker or one that died a moment ago: ask the
        # caller to look again once a heartbeat would have gone stale.
        stale_before = now - timedelta(seconds=settings.JOB_HEARTBEAT_STALE_S)
        claimed = TrainingRun.objects.filter(pk=run_id, status=RunStatus.RUNNING, heartbeat_at__lt=stale_before).update(
            heartbeat_at=now
        )
        if not claimed:
            run = TrainingRun.objects.filter(pk=run_id).only("status").first()
            if run is not None and run.status == RunStatus.RUNNING:
                return RUNNING_ELSEWHERE
            return run.status if run else "deleted"
    run = TrainingRun.objects.select_related("detector").get(pk=run_id)
    detector = run.detector
    inputs = gather_training_inputs(detector)
    problems = training_problems(detector, inputs)
    if problems:
        _finish(run_id, RunStatus.FAILED, error=" ".join(problems))
        return RunStatus.FAILED
    stats = training_stats(detector, inputs)
    classes = list(detector.classes.order_by("position", "name").values_list("name", flat=True))
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
    try:
        with rasterio.Env(**inputs[0].gdal_env):
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
    """Predict in testing, accuracy and training areas: store the testing predictions, score the accuracy
    areas, and review both the accuracy areas (matches, misses, false detections) and the training areas
    (what the detector finds there that no outline covers: objects the user may have forgotten)."""
    from workers.ml.predict import predict_areas
    from workers.ml.raster_io import image_crs_to_lonlat_many, to_geojson
    from workers.ml.scoring import review_detections, score_detections, unoutlined_detections

    class_ids = dict(DetectorClass.objects.filter(detector=run.detector).values_list("name", "pk"))
    detection_type = run.detector.detection_type
    predicted_in_accuracy, truth, accuracy_areas = [], [], []
    rows, review = [], []
    unoutlined = 0
    # An object left without an outline was taught as background, so the detector's confidence there is
    # damped: the training areas' check looks with a lower foreground threshold (it only suggests a look).
    sensitive = dataclasses.replace(
        model, recipe=dataclasses.replace(model.recipe, fg_threshold=min(model.recipe.fg_threshold, 0.3))
    )
    for item in inputs:
        with rasterio.open(item.cog_path) as src:
            in_testing = predict_areas(model, src, item.testing_areas)
            in_accuracy = predict_areas(model, src, item.accuracy_areas)
            in_training = predict_areas(sensitive, src, item.training_areas)
        stored = stored_geometries([d.geometry for d in in_testing], item.crs)
        for d, (geometry, area_m2) in zip(in_testing, stored, strict=True):
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
        predicted_here = [(d.geometry, d.class_name) for d in in_accuracy]
        predicted_in_accuracy += predicted_here
        truth += item.accuracy_outlines
        accuracy_areas += item.accuracy_areas
        reviewed = []
        if item.accuracy_areas:
            reviewed += review_detections(
                predicted_here, item.accuracy_outlines, item.accuracy_areas, classes, detection_type
            )
        forgotten = unoutlined_detections(
            [(d.geometry, d.class_name) for d in in_training],
            item.training_outlines,
            item.training_areas,
            detection_type,
        )
        unoutlined += len(forgotten)
        reviewed += forgotten
        review += [
            {
                "type": "Feature",
                "geometry": to_geojson(lonlat),
                "properties": {"kind": kind, "class": class_name, "image": item.image_id},
            }
            for (_, class_name, kind), lonlat in zip(
                reviewed, image_crs_to_lonlat_many([g for g, _, _ in reviewed], item.crs), strict=True
            )
        ]
    with transaction.atomic():
        DetectedObject.objects.filter(training_run=run).delete()
        DetectedObject.objects.bulk_create(rows, batch_size=1000)
        TrainingRun.objects.filter(pk=run.pk).update(review={"type": "FeatureCollection", "features": review})
    if not accuracy_areas:
        return {
            "score": None,
            "unoutlined": unoutlined,
            "note": "Draw an accuracy area and outline its objects to get a score.",
        }
    scores = score_detections(predicted_in_accuracy, truth, accuracy_areas, classes, detection_type)
    overall = scores.get("overall", {})
    return {**scores, "score": round(100 * float(overall.get("f1", 0.0)), 2), "unoutlined": unoutlined}


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


def run_detection_cell(cell_id: str) -> str:
    """Detect the objects owned by one grid cell and replace that cell's objects with them."""
    from shapely.ops import unary_union

    from workers.ml.grid import GridCell
    from workers.ml.predict import predict_window
    from workers.ml.raster_io import window_geometry

    now = timezone.now()
    claimed = DetectionCell.objects.filter(
        pk=cell_id,
        status__in=(DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING),
        run__status__in=(RunStatus.PENDING, RunStatus.RUNNING),
    ).update(status=DetectionCell.Status.RUNNING, attempts=F("attempts") + 1)
    if not claimed:
        return "skipped"
    cell = DetectionCell.objects.select_related("run__training_run", "image").get(pk=cell_id)
    run = cell.run
    DetectionRun.objects.filter(pk=run.pk, status=RunStatus.PENDING).update(status=RunStatus.RUNNING, started_at=now)
    started = time.monotonic()
    model = load_trained_model(run.training_run)
    store = get_blob_store()
    image = cell.image
    class_ids = dict(DetectorClass.objects.filter(detector_id=run.detector_id).values_list("name", "pk"))
    areas = Area.objects.filter(detector_id=run.detector_id, image=image, kind=Area.Kind.DETECTION)
    col, row, width, height = cell.window
    grid_cell = GridCell(0, 0, rasterio.windows.Window(col, row, width, height))
    with rasterio.Env(**store.gdal_env()), rasterio.open(store.gdal_path(image.cog_key)) as src:
        owned = window_geometry(grid_cell.window, src.transform)
        if areas.exists():
            region = unary_union([_to_shapely(a.geometry.transform(image.crs, clone=True)) for a in areas])
            owned = owned.intersection(region)
        padded = grid_cell.padded(cell.margin, src.width, src.height)
        found = predict_window(model, src, padded)
    import shapely

    # A neighbouring cell owns the objects whose representative point falls in its window.
    points = shapely.point_on_surface([d.geometry for d in found]) if found else []
    found = [d for d, inside in zip(found, shapely.contains(owned, points), strict=True) if inside]
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


def finish_detection(run_id: str) -> str:
    """All cells ended: write the exports and give the run its final state. Safe to run twice, at once too:
    the run's row is locked for the whole finish, and the second caller finds it final."""
    try:
        with transaction.atomic():
            run = DetectionRun.objects.select_for_update().filter(pk=run_id).first()
            return _finish_locked_run(run)
    except Exception:
        DetectionRun.objects.filter(pk=run_id, status__in=(RunStatus.PENDING, RunStatus.RUNNING)).update(
            status=RunStatus.FAILED,
            error="Putting the results together failed. Please run the detection again.",
            finished_at=timezone.now(),
        )
        raise


def _finish_locked_run(run: DetectionRun | None) -> str:
    if run is None or run.status not in (RunStatus.PENDING, RunStatus.RUNNING):
        return run.status if run else "deleted"
    cells = run.cells.all()
    if cells.filter(status__in=(DetectionCell.Status.PENDING, DetectionCell.Status.RUNNING)).exists():
        return run.status
    failed = cells.filter(status=DetectionCell.Status.FAILED).count()
    merge_border_objects(run)
    keys = write_detection_exports(run)
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


def detection_run_prefix(run_id) -> str:
    return f"detection-runs/{run_id}/"


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
