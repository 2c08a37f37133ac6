"""Translations between the platform's rows and the public API's shapes (spec sections 5 to 9).

Nothing here runs a job: operations read the state of the rows that do the work, and GeoJSON coming
in is validated with the same polygon rules as our own API.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.gis.geos import MultiPolygon, Polygon
from django.db import transaction
from django.utils import timezone
from rest_framework import serializers

from detectors.models import (
    Annotation,
    Area,
    DetectedObject,
    Detector,
    DetectorClass,
    RunStatus,
    TrainingRun,
    public_api_detection_run_prefix,
)
from imagery.models import Image
from imagery.storage import get_blob_store
from imagery.tile_views import tile_query, tile_url_template
from imagery.tiles import zoom_range
from picterra.api.fields import parse_polygon
from picterra.public_api.models import Operation, RasterDetails, VectorLayer

DOWNLOAD_URL_TTL_S = 3600
ANNOTATION_TYPES = ("outline", "training_area", "testing_area", "validation_area")


class BadGeoJSON(ValueError):
    """An uploaded GeoJSON file that cannot become polygons; the message says why."""


# --- rasters -----------------------------------------------------------------------------------------------------


def raster_status(image: Image) -> str:
    """The public API's legacy raster statuses: processing → ready | failed."""
    if image.status == Image.Status.READY:
        return "ready"
    if image.status == Image.Status.FAILED:
        return "failed"
    return "processing"


def details_of(image: Image) -> RasterDetails:
    try:
        return image.public_details
    except RasterDetails.DoesNotExist:
        return RasterDetails(image=image)


def raster_tms_url(image: Image) -> str | None:
    """The raster's tile URL template, once it is processed (None before)."""
    if image.status != Image.Status.READY or not image.cog_version:
        return None
    bands = tuple(image.display_bands or [1, 2, 3][: image.band_count or 3])
    rescale = tuple(tuple(r) for r in image.rescale) if image.rescale else None
    return tile_url_template(settings.TILE_BASE_URL, image.pk, image.cog_version, 1, "png", tile_query(bands, rescale))


def raster_zooms(image: Image) -> tuple[int | None, int | None]:
    """(tiles_min_zoom, tiles_max_zoom) of a processed raster; (None, None) before, or for a CRS oddity."""
    if image.status != Image.Status.READY or not image.cog_version:
        return None, None
    try:
        return zoom_range(image.crs, image.bounds, image.width, image.height)
    except Exception:  # noqa: BLE001 - zooms are informative only; a CRS oddity must not break the raster
        return None, None


def raster_footprint(image: Image) -> dict[str, Any] | None:
    """The footprint as GeoJSON with its bbox, or None."""
    if image.footprint is None:
        return None
    footprint = json.loads(image.footprint.geojson)
    footprint["bbox"] = list(image.footprint.extent)
    return footprint


def band_specification(image: Image) -> dict[str, Any]:
    return {
        "ranges": [list(r) for r in image.rescale or []],
        "display_bands": [
            {"type": "multiband", "name": "default", "bands": [b - 1 for b in image.display_bands or []]}
        ],
    }


def apply_band_specification(image: Image, spec: Any) -> None:
    """`{"ranges": [[min,max]...], "display_bands": [{"bands": [2,1,0]}]}` (0-based) onto the image's display."""
    if not isinstance(spec, dict):
        raise serializers.ValidationError({"multispectral_band_specification": "Must be an object."})
    count = image.band_count or 0
    ranges = spec.get("ranges")
    if ranges is not None:
        if not isinstance(ranges, list) or not all(
            isinstance(r, list) and len(r) == 2 and all(isinstance(v, int | float) for v in r) and r[0] < r[1]
            for r in ranges
        ):
            raise serializers.ValidationError(
                {"multispectral_band_specification": "ranges must be a list of [min, max] with min < max."}
            )
        image.rescale = ranges
    display = spec.get("display_bands") or spec.get("vizbands")
    if display:
        bands = display[0].get("bands") if isinstance(display, list) and isinstance(display[0], dict) else None
        if (
            not isinstance(bands, list)
            or len(bands) not in (1, 3)
            or not all(isinstance(b, int) and 0 <= b < count for b in bands)
        ):
            raise serializers.ValidationError(
                {"multispectral_band_specification": f"display bands: 1 or 3 band indexes from 0 to {count - 1}."}
            )
        image.display_bands = [b + 1 for b in bands]


# --- detectors ---------------------------------------------------------------------------------------------------


def is_runnable(detector: Detector) -> bool:
    """A detector runs once one of its trainings succeeded."""
    return detector.training_runs.filter(status=RunStatus.SUCCEEDED).exists()


def detector_classes(detector: Detector):
    """The detector's classes in the order of the model's outputs."""
    return detector.classes.order_by("position", "name")


# --- operations --------------------------------------------------------------------------------------------------


def settled(operation: Operation) -> Operation:
    """The operation as the client polls it: ended first when the row it follows has ended."""
    if operation.status == Operation.Status.RUNNING:
        _settle(operation)
    return operation


def dataset_recommendation(run: TrainingRun) -> dict:
    """A trained version's suggestions of where to label next (``TrainingRun.suggestions``) as the public API
    returns them: a lon/lat FeatureCollection of Polygons, properties ``rank``, ``reason``, ``score`` and the
    image as ``raster_id``."""
    features = [
        {
            "type": "Feature",
            "geometry": f["geometry"],
            "properties": {
                "rank": f["properties"]["rank"],
                "reason": f["properties"]["reason"],
                "score": f["properties"]["score"],
                "raster_id": f["properties"]["image"],
            },
        }
        for f in (run.suggestions or {}).get("features", [])
    ]
    return {"type": "FeatureCollection", "features": features}


def finished_operation(organization, user, kind: str, results=None, errors=None, metadata=None) -> Operation:
    """An operation done in the request; `BlobRef`s in `results` become its blob_refs."""
    results, refs = split_blob_refs(None if errors else results)
    return Operation.objects.create(
        organization=organization,
        created_by=user,
        kind=kind,
        status=Operation.Status.FAILED if errors else Operation.Status.SUCCESS,
        results=results,
        blob_refs=refs,
        errors=errors,
        metadata=metadata or {},
        finished_at=timezone.now(),
    )


def _settle(operation: Operation) -> None:
    outcome = _outcome(operation)
    if outcome is None:
        return
    status, results, errors = outcome
    results, refs = split_blob_refs(results)
    now = timezone.now()
    # Conditional: two polls racing to end the same operation store one result.
    updated = Operation.objects.filter(pk=operation.pk, status=Operation.Status.RUNNING).update(
        status=status, results=results, blob_refs=refs, errors=errors, finished_at=now
    )
    if not updated:  # another poll ended it first: answer with what that one stored
        operation.refresh_from_db()
        return
    operation.status, operation.results, operation.errors = status, results, errors
    operation.blob_refs, operation.finished_at = refs, now


def _outcome(operation: Operation) -> tuple[str, Any, Any] | None:
    failed = Operation.Status.FAILED
    kind = operation.kind
    if kind == Operation.Kind.UPLOAD_RASTER:
        image = operation.image
        if image is None:
            return failed, None, ["The raster was deleted before it finished processing."]
        if image.status == Image.Status.READY:
            return Operation.Status.SUCCESS, {"raster_id": str(image.pk)}, None
        if image.status == Image.Status.FAILED:
            return failed, None, [image.error or "The raster could not be processed."]
        return None
    if kind == Operation.Kind.TRAINING:
        run = operation.training_run
        if run is None:
            return failed, None, ["The detector was deleted before training finished."]
        if run.status == RunStatus.SUCCEEDED:
            return Operation.Status.SUCCESS, {"score": run.metrics.get("score"), "stats": run.stats}, None
        if run.is_finished:
            return failed, None, [run.error or f"Training was {run.status}."]
        return None
    if kind == Operation.Kind.DETECTION:
        run = operation.detection_run
        if run is None:
            return failed, None, ["The detector was deleted before the detection finished."]
        if run.status == RunStatus.SUCCEEDED:
            return Operation.Status.SUCCESS, detection_results(run), None
        if run.is_finished:
            message = run.error or f"Detection was {run.status}."
            if run.status == RunStatus.PARTIAL:
                message = f"{run.cells_failed} of {run.cells_total} parts of the image failed: {run.error}".strip()
            return failed, None, [message]
        return None
    return failed, None, ["This operation was interrupted."]


def detection_results(run) -> dict[str, Any]:
    """One vector layer per (class, raster) of the run, and the legacy MultiPolygon files."""
    store = get_blob_store()
    prefix = public_api_detection_run_prefix(run.pk)  # ends with "/"
    by_class = []
    everything: list = []
    image = run.images.order_by("created_at").first()
    for detector_class in run.detector.classes.order_by("position", "name"):
        objects = DetectedObject.objects.filter(detection_run=run, detector_class=detector_class, image=image)
        polygons = [json.loads(o.geometry.geojson)["coordinates"] for o in objects]
        everything.extend(polygons)
        layer, _ = VectorLayer.objects.get_or_create(
            detection_run=run,
            detector_class=detector_class,
            image=image,
            defaults={
                "name": f"{run.detector.name} - {detector_class.name}",
                "color": detector_class.color,
                "count": len(polygons),
            },
        )
        key = f"{prefix}class-{detector_class.pk}.geojson"
        _put_json(store, key, {"type": "MultiPolygon", "coordinates": polygons})
        by_class.append(
            {
                "class": {"id": str(detector_class.pk), "name": detector_class.name},
                "result": {"url": BlobRef(key), "vector_layer_id": str(layer.pk)},
            }
        )
    key = f"{prefix}all.geojson"
    _put_json(store, key, {"type": "MultiPolygon", "coordinates": everything})
    return {"url": BlobRef(key), "by_class": by_class}


def _put_json(store, key: str, data: Any) -> None:
    import io

    store.put_stream(key, io.BytesIO(json.dumps(data).encode()))


@dataclass(frozen=True)
class BlobRef:
    """A blob the server wrote, put where its download URL goes while results are built.

    Only code can make one (JSON never decodes to it), so no string a user chose is ever signed.
    """

    key: str


def split_blob_refs(value: Any) -> tuple[Any, list[dict[str, Any]]]:
    """Results to store (None where a blob goes) and their blob_refs: `[{"path": [...], "key": ...}]`."""
    refs: list[dict[str, Any]] = []

    def walk(item: Any, path: list) -> Any:
        if isinstance(item, BlobRef):
            refs.append({"path": path, "key": item.key})
            return None
        if isinstance(item, dict):
            return {k: walk(v, [*path, k]) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [walk(v, [*path, i]) for i, v in enumerate(item)]
        return item

    return walk(value, []), refs


def signed_results(results: Any, blob_refs: list | None) -> Any:
    """The stored results with a fresh signed URL at each place listed in blob_refs, and nowhere else.

    Every read signs again (downloads need no API key and links expire); a path that no longer fits the
    results is skipped rather than guessed at.
    """
    if not blob_refs or not isinstance(results, dict | list):
        return results
    rendered = copy.deepcopy(results)
    store = get_blob_store()
    for ref in blob_refs:
        path, key = (ref.get("path"), ref.get("key")) if isinstance(ref, dict) else (None, None)
        if not isinstance(path, list) or not path or not isinstance(key, str) or not key:
            continue
        target = rendered
        try:
            for step in path[:-1]:
                target = target[step]
            target[path[-1]]  # noqa: B018 - the place must exist: nothing is added to what was stored
            target[path[-1]] = store.signed_url(key, "GET", DOWNLOAD_URL_TTL_S)
        except (KeyError, IndexError, TypeError):
            continue
    return rendered


# --- GeoJSON files -----------------------------------------------------------------------------------------------


def polygons_from_geojson(raw: bytes, limit: int = 100_000) -> list[Polygon]:
    """Every polygon of a GeoJSON FeatureCollection, Feature, Polygon or MultiPolygon (lon/lat)."""
    try:
        document = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadGeoJSON("The file is not valid JSON.") from exc
    except RecursionError as exc:
        raise BadGeoJSON("The file's JSON is nested too deeply.") from exc
    geometries = []
    if isinstance(document, dict) and document.get("type") == "FeatureCollection":
        features = document.get("features")
        if not isinstance(features, list):
            raise BadGeoJSON("A FeatureCollection needs a list of features.")
        geometries = [f.get("geometry") if isinstance(f, dict) else None for f in features]
    elif isinstance(document, dict) and document.get("type") == "Feature":
        geometries = [document.get("geometry")]
    elif isinstance(document, dict):
        geometries = [document]
    else:
        raise BadGeoJSON("The file must hold a GeoJSON FeatureCollection, Feature, Polygon or MultiPolygon.")
    polygons: list[Polygon] = []
    for index, geometry in enumerate(geometries):
        if not isinstance(geometry, dict):
            raise BadGeoJSON(f"Feature {index} has no geometry.")
        kind = geometry.get("type")
        coordinates = geometry.get("coordinates")
        if kind == "Polygon":
            parts = [coordinates]
        elif kind == "MultiPolygon" and isinstance(coordinates, list):
            parts = coordinates
        else:
            raise BadGeoJSON(f"Feature {index} is a {kind}; only Polygon and MultiPolygon are accepted.")
        for part in parts:
            try:
                polygons.append(parse_polygon({"type": "Polygon", "coordinates": part}))
            except serializers.ValidationError as exc:
                raise BadGeoJSON(f"Feature {index}: {_message(exc)}") from exc
        if len(polygons) > limit:
            raise BadGeoJSON(f"The file has more than {limit} polygons.")
    return polygons


def _message(exc: serializers.ValidationError) -> str:
    detail = exc.detail
    while isinstance(detail, list | dict) and detail:
        detail = detail[0] if isinstance(detail, list) else next(iter(detail.values()))
    return str(detail)


def check_inside(image: Image, polygons: list[Polygon]) -> None:
    if image.footprint is None:
        return
    for index, polygon in enumerate(polygons):
        if not polygon.intersects(image.footprint):
            raise BadGeoJSON(f"Polygon {index} lies outside the raster.")


def read_upload(key: str) -> bytes:
    store = get_blob_store()
    if not store.exists(key):
        raise BadGeoJSON("No file has been received for this upload yet: PUT it to the upload URL first.")
    if store.size(key) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE * 10:
        raise BadGeoJSON("The GeoJSON file is too large.")
    with store.open_read(key) as fh:
        return fh.read()


def polygons_feature_collection(polygons, properties: dict | None = None) -> dict[str, Any]:
    """A FeatureCollection of Polygon features (the client merges them into one MultiPolygon per class)."""
    features = []
    for polygon in polygons:
        parts = polygon if isinstance(polygon, MultiPolygon) else [polygon]
        for part in parts:
            features.append({"type": "Feature", "properties": properties or {}, "geometry": json.loads(part.geojson)})
    return {"type": "FeatureCollection", "features": features}


def class_for(detector: Detector, class_id: str | None) -> DetectorClass:
    classes = detector.classes.order_by("position", "name")
    if class_id in (None, ""):
        first = classes.first()
        if first is None:
            raise BadGeoJSON("The detector has no class; add one first.")
        return first
    try:
        return classes.get(pk=class_id)
    except (DetectorClass.DoesNotExist, ValueError, Exception) as exc:
        raise BadGeoJSON(f"The detector has no class with id {class_id}.") from exc


@transaction.atomic
def replace_annotations(detector: Detector, image: Image, annotation_type: str, polygons, detector_class, user) -> int:
    """`set_annotations` replaces that type of annotation on (detector, raster); outlines per class."""
    if annotation_type == "outline":
        Annotation.objects.filter(detector=detector, image=image, detector_class=detector_class).delete()
        Annotation.objects.bulk_create(
            Annotation(detector=detector, image=image, detector_class=detector_class, geometry=p, created_by=user)
            for p in polygons
        )
    else:
        kind = {"training_area": Area.Kind.TRAINING, "testing_area": Area.Kind.TESTING}.get(
            annotation_type, Area.Kind.ACCURACY
        )
        Area.objects.filter(detector=detector, image=image, kind=kind).delete()
        Area.objects.bulk_create(
            Area(detector=detector, image=image, kind=kind, geometry=p, created_by=user) for p in polygons
        )
    return len(polygons)
