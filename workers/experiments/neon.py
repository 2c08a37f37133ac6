"""NEON tree-crown data from the ``deepforest==2.1.0`` wheel (MIT): fetched with pip, data files only.

``fetch_deepforest_data()`` runs ``pip download deepforest==2.1.0 --no-deps`` into ``var/cache/deepforest``,
checks the wheel's sha256 and extracts ``deepforest/data/``; nothing of deepforest is imported or run.

Datasets (10 cm RGB, boxes drawn by people, pixel coordinates):
- ``neon/osbs``: ``OSBS_029.tif`` (georeferenced, EPSG:32617), 61 trees: top half trains, bottom half scores.
- ``neon/yell``: ``2019_YELL_2_541000_4977000_image_crop.png`` (1249x1035), 279 trees: a left strip with
  <= 100 trees trains, the rest scores. The PNG has no georeference: it is written as a GeoTIFF at a
  nominal 10 cm UTM 12N position (the pixels and boxes are unchanged).

Training outlines are the ellipses inscribed in the boxes (closer to crown shapes than boxes); the
detector outputs ``bbox`` and is scored against the human boxes at IoU 0.5 (0.4 also reported).
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from PIL import Image
from shapely import affinity
from shapely.geometry import Point, Polygon, box

from workers.ml.datasets import LabelledImage

from .dataset import REPO_ROOT, ExperimentDataset

WHEEL = "deepforest-2.1.0-py3-none-any.whl"
WHEEL_SHA256 = "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54"
CACHE = REPO_ROOT / "var" / "cache" / "deepforest"
NEON_SITES = ("osbs", "yell")
FILES = ("OSBS_029.tif", "OSBS_029.csv", "2019_YELL_2_541000_4977000_image_crop.png",
         "2019_YELL_2_541000_4977000_image_crop.xml")


def fetch_deepforest_data(cache: Path = CACHE) -> Path:
    """Download the pinned wheel with pip (once), verify it, extract the data files; return their folder."""
    data = cache / "data"
    if all((data / f).exists() for f in FILES):
        return data
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / WHEEL
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "deepforest==2.1.0", "--no-deps", "-d", str(cache)],
                       check=True)
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise RuntimeError(f"{wheel} has sha256 {digest}, expected {WHEEL_SHA256}")
    data.mkdir(exist_ok=True)
    with zipfile.ZipFile(wheel) as z:
        for f in FILES:
            (data / f).write_bytes(z.read(f"deepforest/data/{f}"))
    return data


def _ellipse(b: tuple[float, float, float, float]) -> Polygon:
    x0, y0, x1, y1 = b
    return affinity.scale(Point((x0 + x1) / 2, (y0 + y1) / 2).buffer(1.0, 16), (x1 - x0) / 2, (y1 - y0) / 2)


def _voc_boxes(path: Path) -> list[tuple[float, float, float, float]]:
    root = ET.parse(path).getroot()
    out = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        out.append(tuple(float(bb.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")))
    return out


def _csv_boxes(path: Path) -> list[tuple[float, float, float, float]]:
    with path.open() as fh:
        return [tuple(float(r[k]) for k in ("xmin", "ymin", "xmax", "ymax")) for r in csv.DictReader(fh)]


def _png_to_geotiff(png: Path, tif: Path, crs: str, origin: tuple[float, float], gsd: float) -> Affine:
    transform = Affine(gsd, 0, origin[0], 0, -gsd, origin[1])
    if not tif.exists():
        arr = np.asarray(Image.open(png).convert("RGB")).transpose(2, 0, 1)
        with rasterio.open(tif, "w", driver="GTiff", width=arr.shape[2], height=arr.shape[1], count=3,
                           dtype="uint8", crs=crs, transform=transform, tiled=True, compress="deflate") as dst:
            dst.write(arr)
    return transform


def neon_dataset(site: str, max_outlines: int = 100) -> ExperimentDataset:
    data = fetch_deepforest_data()
    if site == "osbs":
        tif = data / "OSBS_029.tif"
        boxes = _csv_boxes(data / "OSBS_029.csv")
        with rasterio.open(tif) as src:
            transform, (w, h) = src.transform, (src.width, src.height)
        train_px, acc_px = [box(0, 0, w, h // 2)], [box(0, h // 2, w, h)]
    elif site == "yell":
        tif = data / "yell.tif"
        png = data / "2019_YELL_2_541000_4977000_image_crop.png"
        transform = _png_to_geotiff(png, tif, "EPSG:32612", (541000.0, 4977000.0), 0.1)
        boxes = _voc_boxes(data / "2019_YELL_2_541000_4977000_image_crop.xml")
        w, h = Image.open(png).size
        # the widest left strip holding <= max_outlines boxes trains; the rest (after a gap) scores
        xs = sorted(b[2] for b in boxes)
        split = int(xs[max_outlines - 1]) if len(xs) > max_outlines else w // 2
        while sum(1 for b in boxes if b[0] < split) > max_outlines:
            split -= 8
        train_px, acc_px = [box(0, 0, split, h)], [box(split, 0, w, h)]
    else:
        raise KeyError(site)

    def to_crs(g):
        return affinity.affine_transform(g, [transform.a, transform.b, transform.d, transform.e,
                                             transform.c, transform.f])

    train = [to_crs(a) for a in train_px]
    acc = [to_crs(a) for a in acc_px]
    outlines = [(to_crs(_ellipse(b)), "tree") for b in boxes if box(*b).intersects(train_px[0])]
    truth = [(to_crs(box(*b)), "tree") for b in boxes]
    item = LabelledImage(str(tif), train, outlines, acc)
    return ExperimentDataset(f"neon/{site}", item, truth, ["tree"], "count", "bbox",
                             notes="NEON 10 cm RGB, human boxes (deepforest 2.1.0 data)")
