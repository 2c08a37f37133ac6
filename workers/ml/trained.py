"""The trained detector as every stage passes it around: network, configuration, recipe and model card.

Its own module so that prediction (which needs it) and training (which calls prediction to fit its score
threshold on the training areas) depend on it without depending on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .config import DetectorConfig, Recipe
from .models import Detector


@dataclass
class TrainedModel:
    """A trained network with everything needed to predict with it and to describe it (the model card)."""

    network: Detector
    config: DetectorConfig
    recipe: Recipe
    card: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"
