"""Fixtures for the ML core: tiny seeded generated rasters written as tiled GeoTIFFs (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shapely.geometry import box

from workers.ml.datasets import LabelledImage
from workers.ml.synthetic import Scene, tiny_scene

torch.set_num_threads(2)


@pytest.fixture
def make_scene_tif(tmp_path: Path):
    """Factory: write a tiny seeded scene to a GeoTIFF and return (path, scene)."""

    def make(seed: int = 0, size: int = 128, n: int = 6, name: str = "scene.tif") -> tuple[Path, Scene]:
        scene = tiny_scene(seed=seed, size=size, n=n)
        return scene.write(tmp_path / name), scene

    return make


@pytest.fixture
def discs_to_learn(tmp_path: Path) -> LabelledImage:
    """What the training tests learn from: a 128 px scene of eight discs (seed 1), the whole of it a training
    area with every disc outlined, no accuracy area."""
    scene = tiny_scene(seed=1, size=128, n=8, radius=8)
    path = scene.write(tmp_path / "s.tif")
    return LabelledImage(str(path), [scene.to_crs(box(0, 0, 128, 128))],
                         [(scene.to_crs(g), c) for g, c in scene.objects], [])
