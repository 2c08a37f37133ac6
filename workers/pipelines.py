"""The job functions: load a row, call the Django-free ML core, store what it returns.

Each is what one Celery task (workers/tasks.py) calls with a row id. What decides results lives in the ML
core (training, evaluation, the grid's rule of which cell owns an object, the merge geometry); where a run
stands (claims, progress, final states) lives in the app that owns the row (detectors/runs.py). Every
function is safe to run twice: the claim is a conditional UPDATE, and what is written replaces what an
earlier attempt wrote.
"""

from __future__ import annotations

import logging
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import numpy as np
import rasterio
import shapely
from django.conf import settings
from django.db import transaction
from shapely import affinity

from detectors import exports
from detectors.detection import detection_region, model_class_ids
from detectors.models import (
    DetectedObject,
    DetectionCell,
    DetectionRun,
    Detector,
    TrainingRun,
    detection_run_prefix,
    training_run_prefix,
)
from detectors.pairs import pair_source
from detectors.results import (
    NewObject,
    insert_objects,
    lonlat_geometries,
    lonlat_geometry,
    stored_geometries,
    to_shapely,
)
from detectors.runs import (
    DETECTION_CELL,
    DETECTION_FINISH,
    PROGRESS_EVERY_S,
    TRAINING_RUN,
    CellObjects,
    TrainedVersion,
    report_training_progress,
    report_training_waiting,
    unfinished_run,
)
from detectors.training_inputs import gather_training_inputs, training_problems, training_stats
from imagery.storage import get_blob_store
from picterra.jobs import JobFailed, RowMoved, run_row_job
from workers.gpu_slots import training_slot
from workers.ml import train as ml_train
from workers.ml.config import DetectorConfig, default_recipe
from workers.ml.datasets import LabelledImage
from workers.ml.evaluation import ImageEvaluation, evaluate_image, evaluation_metrics
from workers.ml.grid import (
    GridCell,
    cell_border_strips,
    cells_reaching,
    merge_across_cells,
    merged_shape,
    neighbour_keys,
)
from workers.ml.inference_server import InferenceClient, ServerTiles
from workers.ml.model_card import load_model, save_model
from workers.ml.predict import detect_in_cell
from workers.ml.progress import StepClock
from workers.ml.raster_io import (
    ImagePairError,
    image_crs_to_lonlat,
    image_crs_to_lonlat_many,
    open_image,
    to_geojson,
)
from workers.ml.recommend import MAX_SUGGESTIONS, MAX_WINDOWS, suggest_areas
from workers.ml.trained import TrainedModel

logger = logging.getLogger(__name__)

# where to label next: the images looked at after a training, at most (those with training areas first)
MAX_SUGGESTION_IMAGES = 6


# --- Training -----------------------------------------------------------------------------------------------------


def run_training(run_id: str) -> str:
    """One queued training run, start to end (``detectors.runs.TRAINING_RUN`` records its state)."""
    return run_row_job(TRAINING_RUN, run_id, train_and_evaluate)


def train_and_evaluate(run_id: str) -> TrainedVersion:
    """Train, save the weights, predict the testing areas and score the accuracy areas."""
    run = TrainingRun.objects.select_related("detector").get(pk=run_id)
    detector = run.detector
    inputs = gather_training_inputs(detector)
    problems = training_problems(detector, inputs)
    if problems:
        raise JobFailed(" ".join(problems))
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
            source=item.source,  # a change detector's pair: read as one raster on the first image's grid
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
        clock.step(step)
        if time.monotonic() - last_write < PROGRESS_EVERY_S and step < total:
            return
        last_write = time.monotonic()
        report_training_progress(run_id, step, total, history, clock.seconds_left(step, total))

    store = get_blob_store()
    # Each attempt writes under its own prefix: an attempt that loses a race never deletes the winner's files.
    prefix = f"{training_run_prefix(run_id)}{uuid.uuid4().hex[:12]}/"
    device = ml_train.pick_device()  # the recipe is the one for the device that trains
    waiting = partial(report_training_waiting, run_id)
    try:
        with training_slot(device.type, settings.GPU_TRAINING_SLOTS, waiting), rasterio.Env(**inputs[0].gdal_env):
            clock = StepClock(settings.TRAINING_TIME_BUDGET_S)  # the budget starts with the slot, not the wait
            model = ml_train.train_detector(
                images,
                config,
                recipe=default_recipe(device.type, gpu_tta=settings.GPU_TTA),
                progress=progress,
                time_budget_s=settings.TRAINING_TIME_BUDGET_S,
                device=device.type,
                threads=settings.WORKER_TORCH_THREADS,
            )
            with tempfile.TemporaryDirectory(prefix="model-") as tmp:
                save_model(model, Path(tmp))
                keys = {}
                for path in sorted(Path(tmp).iterdir()):
                    keys[path.name] = prefix + path.name
                    store.put_file(keys[path.name], path, move=True)
            metrics, evaluations = _predict_and_score(run, model, inputs, classes)
            store_suggestions(run.pk, model, inputs, evaluations)
    except ImagePairError as exc:  # two dates that cannot be compared: already plain words
        store.delete_prefix(prefix)
        raise JobFailed(str(exc)) from exc
    except ValueError as exc:
        store.delete_prefix(prefix)
        raise JobFailed(f"Training could not start: {exc}.") from exc
    except BaseException:
        store.delete_prefix(prefix)  # cancelled, or failed: this attempt's files are nobody's
        raise
    return TrainedVersion(prefix=prefix, keys=keys, history=history, card=model.card, metrics=metrics, stats=stats)


def _predict_and_score(run: TrainingRun, model: TrainedModel, inputs, classes: list[str]
                       ) -> tuple[dict, list[ImageEvaluation]]:
    """Evaluate the trained model on every image as the ML core does for every caller
    (``workers.ml.evaluation``: testing, accuracy and training areas predicted, accuracy areas scored and
    reviewed, unoutlined finds in training areas), then store the testing predictions and the review; the
    metrics and each image's evaluation."""
    class_ids = model_class_ids(run, classes)  # a class deleted meanwhile: its predictions are not stored
    detection_type = run.detector.detection_type
    evaluations, rows, review = [], [], []
    for item in inputs:
        with open_image(item.source) as src:
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
            rows.append(NewObject(run.pk, None, item.image_id, class_ids[d.class_name], "", geometry, d.score, area_m2))
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
        insert_objects(rows)
        TrainingRun.objects.filter(pk=run.pk).update(review={"type": "FeatureCollection", "features": review})
    return evaluation_metrics(evaluations, classes, detection_type), evaluations


def store_suggestions(run_id, model: TrainedModel, inputs, evaluations: list[ImageEvaluation]) -> None:
    """Where to label next (``workers.ml.recommend``) over the training's images, stored on the run. A failure
    here is logged and stores none: the version trained and scored is what matters."""
    try:
        suggestions = next_areas(model, inputs, evaluations)
    except Exception:
        logger.exception("Could not compute where to label next for training run %s", run_id)
        suggestions = {}
    TrainingRun.objects.filter(pk=run_id).update(suggestions=suggestions)


def next_areas(model: TrainedModel, inputs, evaluations: list[ImageEvaluation]) -> dict:
    """The ``MAX_SUGGESTIONS`` best squares over the images (images with training areas first, at most
    ``MAX_SUGGESTION_IMAGES``; the windows read shared among them), ranked by score, as a lon/lat GeoJSON
    FeatureCollection with properties rank, reason, score and image."""
    images = sorted(zip(inputs, evaluations, strict=True), key=lambda p: not p[0].training_areas)
    images = images[:MAX_SUGGESTION_IMAGES]
    windows = max(8, MAX_WINDOWS // max(1, len(images)))
    found = []
    for item, evaluation in images:
        with open_image(item.source) as src:  # a change detector's pair: read as one raster
            accuracy_review = [r for r in evaluation.review if r[2] != "unoutlined"]
            found += [(s, item) for s in suggest_areas(model, src, training_areas=item.training_areas,
                                                       accuracy_areas=item.accuracy_areas, review=accuracy_review,
                                                       max_windows=windows)]
    found.sort(key=lambda p: -p[0].score)
    found = found[:MAX_SUGGESTIONS]
    features = [
        {
            "type": "Feature",
            "geometry": to_geojson(image_crs_to_lonlat(s.geometry, item.crs)),
            "properties": {"rank": rank, "reason": s.reason, "score": s.score, "image": item.image_id},
        }
        for rank, (s, item) in enumerate(found, start=1)
    ]
    return {"type": "FeatureCollection", "features": features}


# --- Detection ----------------------------------------------------------------------------------------------------

_models: dict[str, TrainedModel] = {}
_inference_clients: dict[str, InferenceClient] = {}  # this process's connection to the inference server


def load_trained_model(training_run: TrainingRun) -> TrainedModel:
    """The trained network of a version, loaded once per worker process and reused across cells (on the CPU
    when an inference server owns the device: this copy only cuts tiles and is sent to the server)."""
    key = str(training_run.pk)
    if key not in _models:
        store = get_blob_store()
        folder = training_run.weights_key.rsplit("/", 1)[0] + "/"
        with tempfile.TemporaryDirectory(prefix="model-") as tmp:
            for blob in store.list(folder):
                with store.open_read(blob) as src, open(Path(tmp) / blob.rsplit("/", 1)[-1], "wb") as dst:
                    dst.write(src.read())
            model = load_model(Path(tmp), device="cpu" if settings.DETECT_INFERENCE == "server" else None)
        _models.clear()  # one version at a time per process: bounded memory
        _models[key] = model
    return _models[key]


def detection_tiles(training_run: TrainingRun) -> ServerTiles | None:
    """Where a cell's tiles are predicted: None for in-process (``DETECT_INFERENCE=local``), else by the
    worker's inference server, the model known there by the version's id."""
    if settings.DETECT_INFERENCE != "server":
        return None
    address = settings.INFERENCE_SERVER_SOCKET
    if address not in _inference_clients:
        _inference_clients[address] = InferenceClient(address, timeout_s=settings.INFERENCE_SERVER_TIMEOUT_S)
    return ServerTiles(_inference_clients[address], f"training-run-{training_run.pk}")


def run_detection_cell(cell_id: str) -> str:
    """One grid cell of a detection run (``detectors.runs.DETECTION_CELL`` records its state and retries)."""
    return run_row_job(DETECTION_CELL, cell_id, detect_cell_objects)


def detect_cell_objects(cell_id: str) -> CellObjects:
    """The objects owned by one grid cell, as unsaved rows (they replace the cell's objects when stored)."""
    cell = DetectionCell.objects.select_related(
        "run__training_run", "run__detector", "run__second_image", "image"
    ).get(pk=cell_id)
    run = cell.run
    started = time.monotonic()
    model = load_trained_model(run.training_run)
    store = get_blob_store()
    image = cell.image
    # By the ids saved when the version trained: a renamed class keeps its objects, a deleted one's are skipped.
    class_ids = model_class_ids(run.training_run, list(model.config.classes))
    region = detection_region(run.detector_id, image)
    col, row, width, height = cell.window
    grid_cell = GridCell(0, 0, rasterio.windows.Window(col, row, width, height))
    source = store.gdal_path(image.cog_key)
    if run.detector.kind == Detector.Kind.CHANGE:
        if run.second_image is None:
            raise JobFailed("The second image of this change detection has been deleted: run the detection again.")
        source = pair_source(image, run.second_image)  # the same grid, margins and merge: only pixels differ
    try:
        with rasterio.Env(**store.gdal_env()), open_image(source) as src:
            found = detect_in_cell(model, src, grid_cell, cell.margin, region, detection_tiles(run.training_run))
    except ImagePairError as exc:
        raise JobFailed(str(exc)) from exc
    found = [d for d in found if class_ids.get(d.class_name)]
    geometries = [d.geometry for d in found]
    near_border = near_cell_borders(cell, image, geometries)
    lonlat = lonlat_geometries(geometries, image.crs)  # kept for the cell's export part
    rows = [
        NewObject(None, run.pk, image.pk, class_ids[d.class_name], cell.key, geometry, d.score, area_m2, near)
        for d, (geometry, area_m2), near in zip(
            found, stored_geometries(geometries, image.crs, lonlat), near_border, strict=True
        )
    ]
    return CellObjects(rows=rows, seconds=time.monotonic() - started, lonlat=lonlat)


def near_cell_borders(cell: DetectionCell, image, geometries: list) -> list[bool]:
    """Per object (image CRS): whether it lies in a strip along a border between this cell and a neighbour
    (``workers.ml.grid.cell_border_strips`` of the cells around it), where the final step may merge it."""
    if not geometries:
        return []
    reach = cells_reaching(cell.key, cell.window, cell.margin)
    keys = neighbour_keys(cell.key, reach)
    around = list(
        DetectionCell.objects.filter(run_id=cell.run_id, image=image, key__in=keys).values_list("window", "margin")
    )
    windows = [rasterio.windows.Window(*window) for window, _ in around]
    strips_px = cell_border_strips(windows, max((m for _, m in around), default=0), image.width, image.height)
    if strips_px is None:
        return [False] * len(geometries)
    t = image.pixel_transform
    strips = affinity.affine_transform(strips_px, [t.a, t.b, t.d, t.e, t.c, t.f])
    shapely.prepare(strips)
    return shapely.intersects(strips, np.asarray(geometries, dtype=object)).tolist()


def finish_detection(run_id: str) -> str:
    """All cells ended: merge, write the exports and give the run its final state
    (``detectors.runs.DETECTION_FINISH``). Safe to run twice, at once too: the start is claimed (and
    counted), so one caller works at a time; the heartbeat moves throughout."""
    return run_row_job(DETECTION_FINISH, run_id, merge_and_export)


def merge_and_export(run_id: str) -> dict[str, str]:
    """Merge objects across cell borders and write the exports; returns the exports' keys.

    No transaction is open while merging and exporting (SpatiaLite would block every other writer for the
    whole export): the final status update is one, short, with the run's row locked. A retry redoes the
    same work: the merge leaves merged objects alone and the exports overwrite the same keys, so nothing is
    doubled or left behind."""
    run = unfinished_run(run_id)
    if run is None:
        raise RowMoved(DetectionRun.objects.filter(pk=run_id).values_list("status", flat=True).first() or "deleted")
    merge_border_objects(run)  # its own short transaction per image
    return write_detection_exports(run)  # files and blobs, outside any transaction


def merge_border_objects(run: DetectionRun) -> int:
    """Join objects that neighbouring cells each reported in part; returns how many rows were merged away.
    Only objects their cells found along a border with a neighbour can be such parts (``near_border``)."""
    merged = 0
    for image in run.images.all():
        objects = list(
            DetectedObject.objects.filter(detection_run=run, image=image, near_border=True).order_by("id")
        )
        if len(objects) < 2:
            continue
        shapes = [to_shapely(o.geometry) for o in objects]
        groups = merge_across_cells(shapes, [o.cell for o in objects], [str(o.detector_class_id) for o in objects])
        with transaction.atomic():
            for group in groups:
                keeper, others = objects[group[0]], [objects[i] for i in group[1:]]
                keeper.geometry, keeper.area_m2 = lonlat_geometry(merged_shape([shapes[i] for i in group]))
                keeper.score = max(objects[i].score for i in group)
                keeper.save(update_fields=["geometry", "score", "area_m2"])
                DetectedObject.objects.filter(pk__in=[o.pk for o in others]).delete()
                merged += len(others)
    return merged


def write_detection_exports(run: DetectionRun) -> dict[str, str]:
    """GeoJSON (lon/lat Polygons), GeoPackage and per-class/per-area counts (CSV) in the blob store."""
    store = get_blob_store()
    prefix = detection_run_prefix(run.pk)
    with tempfile.TemporaryDirectory(prefix="exports-") as tmp:
        files = exports.write_exports(run, Path(tmp), store)
        keys = {}
        for fmt, path in files.items():
            keys[fmt] = prefix + path.name
            store.put_file(keys[fmt], path, move=True)
    # the cells' parts are in the exports now; a later final step (failed cells retried) reads the database
    DetectionCell.objects.filter(run=run).exclude(export_part="").update(export_part="")
    store.delete_prefix(prefix + exports.PARTS)
    return keys
