"""Fixtures for the ML core: tiny seeded generated rasters written as tiled GeoTIFFs (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from workers.ml.synthetic import Scene, tiny_scene

torch.set_num_threads(2)


@pytest.fixture
def make_scene_tif(tmp_path: Path):
    """Factory: write a tiny seeded scene to a GeoTIFF and return (path, scene)."""

    def make(seed: int = 0, size: int = 128, n: int = 6, name: str = "scene.tif") -> tuple[Path, Scene]:
        scene = tiny_scene(seed=seed, size=size, n=n)
        return scene.write(tmp_path / name), scene

    return make
