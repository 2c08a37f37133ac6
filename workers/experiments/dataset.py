"""What an experiment runs on: one image with training areas, <= 100 outlines, separate accuracy areas and the
true objects there; and where datasets are kept. Its own module, so the dataset sources (``neon``,
``packaged``, ``change_datasets``) and the ``repository`` that lists them depend on it, not on each other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shapely.geometry.base import BaseGeometry

from workers.ml.datasets import LabelledImage

REPO_ROOT = Path(__file__).resolve().parents[2]
VAR = REPO_ROOT / "var" / "experiments"


@dataclass
class ExperimentDataset:
    name: str
    item: LabelledImage
    truth: list[tuple[BaseGeometry, str]]
    classes: list[str]
    detection_type: str = "count"
    output_type: str = "polygon"
    notes: str = ""
    extra: dict = field(default_factory=dict)
