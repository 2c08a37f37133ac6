"""Django-free detector core: train from a few outlines, predict polygons over any window, score.

Everything here takes file paths/URLs readable by rasterio (COGs, ``/vsigs/...``), numpy arrays and shapely
geometries in the image CRS (``raster_io.lonlat_to_image_crs`` converts lon/lat GeoJSON), and returns
arrays, geometries or files, so the CLI (``python -m workers.ml``), notebooks and Celery tasks share it.

Public API (plain functions; see each docstring for units and why):

- ``train_detector(images: Sequence[LabelledImage], config: DetectorConfig, *, recipe: Recipe | None = None,
  progress: Callable[[int, int, float], None] | None = None, time_budget_s: float | None = 55.0,
  device: str | None = None, seed: int = 0, threads: int = 2) -> TrainedModel``
  where ``LabelledImage(source, training_areas, outlines=[(polygon, class_name)], accuracy_areas)``.
- ``predict_window(model: TrainedModel, src: rasterio.DatasetReader, window: rasterio.windows.Window)
  -> list[Detection]`` with ``Detection(geometry: Polygon in image CRS, class_name: str, score: float)``;
  ``predict_windows(model, src, windows)`` streams many windows with read-ahead;
  ``detections_to_geojson(detections, crs) -> dict`` gives lon/lat GeoJSON. Each also takes ``tiles``: a
  ``TileRunner`` such as ``inference_server.ServerTiles(InferenceClient(socket), key)``, whose server process
  owns the device and batches the tiles of many processes' windows (the GPU worker).
- ``score_detections(predicted: Sequence[(geometry, class)], truth: Sequence[(geometry, class)],
  accuracy_areas: Sequence[geometry], classes: Sequence[str], detection_type: str = "count") -> dict``.
- ``evaluate_image(model, src, *, classes, detection_type, accuracy_areas, truth, testing_areas, training_areas,
  training_outlines) -> ImageEvaluation`` and ``evaluation_metrics(evaluations, classes, detection_type)
  -> dict``: a trained model predicted, scored and reviewed exactly as a training run does it (the
  platform, the CLI's ``evaluate`` and the experiment runner all call these).
- ``save_model(model: TrainedModel, directory) -> Path`` and ``load_model(directory, device=None)
  -> TrainedModel``: ``weights.safetensors`` + ``model.json`` (the model card).
- ``lonlat_to_image_crs(geojson_or_geometry, crs) -> geometry`` and ``image_crs_to_lonlat(geometry, crs)``.
- ``suggest_areas(model, src, *, training_areas, accuracy_areas, review) -> list[Suggestion]``: where to label
  next, the squares outside the drawn areas where the model is least sure, ranked with a plain-words reason.
- Change detectors: ``ImagePairSource(before, after)`` as a ``LabelledImage.source`` trains one (``Recipe.dates``
  becomes 2); ``open_image(ImagePairSource(...))`` gives the ``ImagePair`` every function above reads like one
  image; ``ImagePairError`` (plain words) when two images cannot be compared.

Layout (TorchGeo-like): ``raster_io`` (window reads), ``datasets`` (chips + targets), ``samplers`` (where to
read), ``models`` (networks), ``train``, ``predict``, ``postprocess`` (masks -> polygons), ``scoring``,
``evaluation`` (a training run's predict + score + review), ``model_card`` (save/load), ``synthetic``
(procedural scenes for tests and experiments), ``change`` (the network over two dates), ``synthetic_change``
(procedural pairs).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# Public names -> the module defining them. Loaded on first use (PEP 562), so a caller that needs only the
# light modules (``grid``, ``raster_io``, ``config``: the web server planning cells or storing results) does
# not load PyTorch and the networks, which cost ~0.9 GB and seconds per process.
_EXPORTS = {
    "DetectorConfig": "config", "Recipe": "config", "LabelledImage": "datasets",
    "ImageEvaluation": "evaluation", "evaluate_image": "evaluation", "evaluation_metrics": "evaluation",
    "load_model": "model_card", "save_model": "model_card", "Detection": "postprocess",
    "detections_to_geojson": "postprocess", "predict_array": "predict", "predict_window": "predict",
    "predict_windows": "predict", "image_crs_to_lonlat": "raster_io", "lonlat_to_image_crs": "raster_io",
    "ImagePairError": "raster_io", "ImagePairSource": "raster_io", "open_image": "raster_io",
    "score_detections": "scoring", "train_detector": "train", "TrainedModel": "trained",
    "Suggestion": "recommend", "suggest_areas": "recommend",
}
__all__ = [
    "Detection", "DetectorConfig", "ImageEvaluation", "ImagePairError", "ImagePairSource", "LabelledImage",
    "Recipe", "Suggestion", "TrainedModel", "open_image",
    "detections_to_geojson", "evaluate_image", "evaluation_metrics", "image_crs_to_lonlat", "load_model",
    "lonlat_to_image_crs", "predict_array", "predict_window", "predict_windows", "save_model", "score_detections",
    "suggest_areas", "train_detector",
]

if TYPE_CHECKING:
    from .config import DetectorConfig, Recipe
    from .datasets import LabelledImage
    from .evaluation import ImageEvaluation, evaluate_image, evaluation_metrics
    from .model_card import load_model, save_model
    from .postprocess import Detection, detections_to_geojson
    from .predict import predict_array, predict_window, predict_windows
    from .raster_io import ImagePairError, ImagePairSource, image_crs_to_lonlat, lonlat_to_image_crs, open_image
    from .recommend import Suggestion, suggest_areas
    from .scoring import score_detections
    from .train import train_detector
    from .trained import TrainedModel


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
