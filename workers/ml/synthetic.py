"""Procedural, seeded aerial scenes with exact outlines, for tests and the experiment framework.

Each generator paints the kind of objects users draw on the platform (tree crowns, cars in parking lots,
buildings, boats on water, solar panel rows) over a textured background, with touching objects,
distractors, shadows, illumination changes and a ground sample distance (GSD) that varies per scene.
Outlines are returned as one shapely Polygon per visible object, in pixel coordinates (x right, y down)
and in the scene's CRS, so that tests and experiments know the exact answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Point, Polygon, box
from shapely.geometry.base import BaseGeometry

SCENE_CRS = "EPSG:32633"
SCENE_ORIGIN = (500_000.0, 5_200_000.0)


@dataclass
class Scene:
    """A generated image (3, H, W) uint8 with its objects as pixel-space polygons and class names."""

    image: np.ndarray
    objects: list[tuple[Polygon, str]]
    gsd: float
    classes: list[str]
    detection_type: str = "count"
    transform: Affine = field(default_factory=Affine.identity)
    crs: str = SCENE_CRS

    def to_crs(self, geom: BaseGeometry) -> BaseGeometry:
        """Pixel polygon -> scene CRS (metres)."""
        t = self.transform
        return affinity.affine_transform(geom, [t.a, t.b, t.d, t.e, t.c, t.f])

    def write(self, path: Path) -> Path:
        """Write the image as a tiled, compressed GeoTIFF readable by rasterio (window reads stay cheap)."""
        c, h, w = self.image.shape
        profile = dict(
            driver="GTiff", width=w, height=h, count=c, dtype="uint8", crs=self.crs, transform=self.transform,
            tiled=True, blockxsize=256, blockysize=256, compress="deflate", photometric="RGB",
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(self.image)
        return path


def _noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Low-pass noise with unit standard deviation: texture at a scale of `sigma` pixels."""
    n = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def _background(rng, h, w, base, texture=18.0, scales=(1.0, 6.0, 30.0)) -> np.ndarray:
    img = np.empty((3, h, w), np.float32)
    tex = sum(_noise(rng, (h, w), s) / (i + 1) for i, s in enumerate(scales))
    for b in range(3):
        img[b] = base[b] + texture * tex * (0.8 + 0.4 * rng.random())
    return img


def _paint(img, objects, rng, colour_fn, shade=0.25, shadow=(0, 0), shadow_dark=0.55, texture=8.0, ids=None):
    """Paint objects (pixel polygons) onto img with per-object colour, centre-bright shading and a cast shadow."""
    _, h, w = img.shape
    if not objects:
        return img
    if ids is None:
        ids = rasterize(((g, i + 1) for i, g in enumerate(objects)), out_shape=(h, w), dtype="int32")
    if shadow != (0, 0):
        fg = ids > 0
        sh = ndimage.shift(fg.astype(np.float32), shadow, order=0) > 0.5
        sh &= ~fg
        img[:, sh] *= shadow_dark
    # distance to the edge, normalised per object -> rounded look for crowns, flat for roofs when shade=0
    dist = ndimage.distance_transform_edt(ids > 0)
    tex = _noise(rng, (h, w), 1.0)
    for i in range(len(objects)):
        sel = ids == i + 1
        if not sel.any():
            continue
        colour = np.asarray(colour_fn(rng), np.float32)
        d = dist[sel]
        rel = d / (d.max() + 1e-6)
        light = (1.0 - shade) + shade * rel
        for b in range(3):
            img[b, sel] = colour[b] * light + texture * tex[sel]
    return img


def _finish(img, rng, gain_range=(0.75, 1.25), blur=0.6) -> np.ndarray:
    _, h, w = img.shape
    gain = rng.uniform(*gain_range)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ang = rng.uniform(0, 2 * math.pi)
    grad = 1.0 + 0.15 * ((xx / w - 0.5) * math.cos(ang) + (yy / h - 0.5) * math.sin(ang))
    img = img * gain * grad
    img = ndimage.gaussian_filter(img, (0, blur, blur))
    img += rng.normal(0, 2.5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def _visible(objects: list[Polygon]) -> list[Polygon]:
    """Later objects occlude earlier ones: clip and keep the largest part, so outlines never overlap."""
    out: list[Polygon] = []
    for i, g in enumerate(objects):
        later = objects[i + 1 :]
        for o in later:
            if g.intersects(o):
                g = g.difference(o)
        if g.is_empty:
            continue
        if g.geom_type != "Polygon":
            parts = [p for p in getattr(g, "geoms", []) if p.geom_type == "Polygon"]
            if not parts:
                continue
            g = max(parts, key=lambda p: p.area)
        if g.area > 4:
            out.append(g)
    return out


def _place(rng, h, w, n, radius_fn, min_sep=0.9, tries=40, margin=0):
    """Poisson-disc-like placement allowing touching: centres at least min_sep*(r1+r2) apart."""
    placed: list[tuple[float, float, float]] = []
    for _ in range(n * tries):
        if len(placed) >= n:
            break
        r = radius_fn(rng)
        x, y = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
        if all((x - px) ** 2 + (y - py) ** 2 >= (min_sep * (r + pr)) ** 2 for px, py, pr in placed):
            placed.append((x, y, r))
    return placed


def _blob(rng, x, y, r, irregular=0.12, n=24) -> Polygon:
    angles = np.linspace(0, 2 * math.pi, n, endpoint=False)
    rad = r * (1 + irregular * _smooth_periodic(rng, n))
    return Polygon(np.c_[x + rad * np.cos(angles), y + rad * np.sin(angles)])


def _smooth_periodic(rng, n):
    k = np.arange(1, 4)
    ph = rng.uniform(0, 2 * math.pi, 3)
    a = rng.normal(0, 1, 3) / k
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    return sum(a[i] * np.sin(k[i] * t + ph[i]) for i in range(3)) / 1.5


def _rect(cx, cy, length, width, angle_deg) -> Polygon:
    return affinity.rotate(box(cx - length / 2, cy - width / 2, cx + length / 2, cy + width / 2), angle_deg)


# --- generators -------------------------------------------------------------------------------------------


def trees(rng: np.random.Generator, h: int, w: int, gsd: float, density: float = 1.0) -> Scene:
    """Tree crowns (2-4.5 m radius) on grass and soil, clustered and touching, with shadows and bushes."""
    img = _background(rng, h, w, (rng.uniform(110, 150), rng.uniform(125, 160), rng.uniform(80, 110)), 14)
    soil = _noise(rng, (h, w), 40) > 0.6
    img[:, soil] = img[:, soil] * 0.6 + np.array([150, 130, 100])[:, None] * 0.4
    n = int(density * h * w * gsd * gsd / 90)
    placed = _place(rng, h, w, n, lambda r: rng.uniform(2.0, 4.5) / gsd, min_sep=0.85)
    crowns = [_blob(rng, x, y, r) for x, y, r in placed]
    # distractors: small bushes (< 1 m) are not trees
    bushes = [_blob(rng, x, y, r, 0.05) for x, y, r in _place(rng, h, w, n // 2, lambda r: rng.uniform(0.4, 0.8) / gsd)]
    img = _paint(img, bushes, rng, lambda r: (r.uniform(60, 80), r.uniform(90, 110), r.uniform(45, 60)), 0.1)
    visible = _visible(crowns)
    sh = (int(round(0.8 / gsd)), int(round(0.6 / gsd)))
    img = _paint(img, visible, rng, lambda r: (r.uniform(25, 60), r.uniform(65, 105), r.uniform(20, 45)),
                 shade=0.6, shadow=sh, texture=10)
    return Scene(_finish(img, rng), [(g, "tree") for g in visible], gsd, ["tree"])


def cars(rng: np.random.Generator, h: int, w: int, gsd: float, density: float = 1.0) -> Scene:
    """Cars parked side by side in rows on asphalt with white lines; dark cars are close to the asphalt."""
    img = _background(rng, h, w, (95, 97, 100), 10)
    lines = np.zeros((h, w), bool)
    objs: list[Polygon] = []
    length, width, spot = 4.5 / gsd, 1.9 / gsd, 2.5 / gsd
    row_gap = 12.0 / gsd
    y = rng.uniform(0.5, 1.0) * row_gap / 2
    while y < h - length / 2:
        x0 = rng.uniform(0, spot)
        for k in range(int((w - x0) / spot)):
            cx = x0 + (k + 0.5) * spot
            lx = int(x0 + k * spot)
            y0, y1 = int(max(0, y - length / 2 - 2)), int(min(h, y + length / 2 + 2))
            lines[y0:y1, lx : lx + max(1, int(0.12 / gsd))] = True
            if rng.random() < 0.6 * density:
                objs.append(_rect(cx + rng.normal(0, 0.1 / gsd), y + rng.normal(0, 0.2 / gsd),
                                  length * rng.uniform(0.9, 1.1), width * rng.uniform(0.9, 1.05),
                                  90 + rng.normal(0, 3)))
        y += row_gap
    img[:, lines] = 215
    palette = [(230, 230, 230), (30, 30, 35), (150, 20, 25), (40, 60, 140), (160, 160, 165), (200, 190, 170)]

    def colour(r):
        c = np.array(palette[r.integers(len(palette))], np.float32)
        return c + r.normal(0, 8, 3)

    img = _paint(img, objs, rng, colour, shade=0.15, shadow=(int(0.5 / gsd), int(0.3 / gsd)), texture=4)
    # windscreens: a darker band across each car
    for g in objs:
        c = g.centroid
        ws = affinity.scale(g, 0.25, 0.8, origin=c)
        ws = affinity.translate(ws, 0, -0.12 * length)
        m = rasterize([(ws, 1)], out_shape=(h, w), dtype="uint8").astype(bool)
        img[:, m] *= 0.45
    return Scene(_finish(img, rng, blur=0.5), [(g, "car") for g in objs], gsd, ["car"])


def buildings(rng: np.random.Generator, h: int, w: int, gsd: float, density: float = 1.0) -> Scene:
    """Rectangular and L-shaped buildings (8-22 m), some adjoining, among roads, lawns and parking lots."""
    img = _background(rng, h, w, (120, 135, 95), 12)
    road = np.zeros((h, w), bool)
    for _ in range(3):
        if rng.random() < 0.5:
            yy = int(rng.uniform(0, h))
            road[max(0, yy - int(4 / gsd)) : yy + int(4 / gsd), :] = True
        else:
            xx = int(rng.uniform(0, w))
            road[:, max(0, xx - int(4 / gsd)) : xx + int(4 / gsd)] = True
    img[:, road] = img[:, road] * 0.2 + 110 * 0.8
    n = int(density * h * w * gsd * gsd / 900)
    placed = _place(rng, h, w, n, lambda r: rng.uniform(5, 11) / gsd, min_sep=0.95)
    objs: list[Polygon] = []
    for x, y, r in placed:
        ang = rng.choice([0, 90]) + rng.normal(0, 10)
        g = _rect(x, y, 2 * r, 2 * r * rng.uniform(0.5, 0.9), ang)
        if rng.random() < 0.3:  # L-shape
            g = g.union(_rect(x + r * 0.6, y + r * 0.6, r, r, ang)).convex_hull if rng.random() < 0.2 else g.union(
                _rect(x + r * 0.5, y + r * 0.5, r * 1.2, r * 0.9, ang))
        objs.append(g)
        if rng.random() < 0.25:  # an adjoining building (row house) sharing a wall
            b = g.bounds
            objs.append(affinity.translate(g, b[2] - b[0] + 0.3 / gsd, 0))
    objs = [g for g in _visible(objs)]
    palette = [(170, 80, 60), (120, 120, 125), (200, 195, 185), (90, 60, 50), (60, 70, 80)]

    def colour(r):
        return np.array(palette[r.integers(len(palette))], np.float32) + r.normal(0, 10, 3)

    # distractors: parking lots with similar grey
    lots = [_rect(*rng.uniform(0, w, 2), rng.uniform(10, 25) / gsd, rng.uniform(10, 20) / gsd, 0) for _ in range(2)]
    img = _paint(img, lots, rng, lambda r: (105, 105, 108), 0.0, texture=3)
    img = _paint(img, objs, rng, colour, shade=0.2, shadow=(int(2 / gsd), int(1.5 / gsd)), texture=5)
    return Scene(_finish(img, rng), [(g, "building") for g in objs], gsd, ["building"])


def boats(rng: np.random.Generator, h: int, w: int, gsd: float, density: float = 1.0) -> Scene:
    """Pointed hulls (5-14 m) on wavy water, some moored side by side, with buoys and wakes as distractors."""
    img = _background(rng, h, w, (40, 75, 95), 10, scales=(2.0, 8.0, 40.0))
    waves = np.sin(np.add.outer(np.arange(h) * 0.3, np.arange(w) * 0.15) + _noise(rng, (h, w), 8) * 2)
    img += 8 * waves[None]
    objs: list[Polygon] = []
    n = int(density * h * w * gsd * gsd / 700)
    for x, y, r in _place(rng, h, w, n, lambda r: rng.uniform(2.5, 7) / gsd, min_sep=1.0):
        ang = rng.uniform(0, 180)
        L, W = 2 * r, 2 * r * rng.uniform(0.28, 0.4)
        hull = Polygon([(-L / 2, -W / 2), (L / 4, -W / 2), (L / 2, 0), (L / 4, W / 2), (-L / 2, W / 2)])
        objs.append(affinity.translate(affinity.rotate(hull, ang, origin=(0, 0)), x, y))
        if rng.random() < 0.35:  # moored alongside
            objs.append(affinity.translate(affinity.rotate(hull, ang, origin=(0, 0)),
                                           x - (W + 0.3 / gsd) * math.sin(math.radians(ang)),
                                           y + (W + 0.3 / gsd) * math.cos(math.radians(ang))))
    objs = _visible(objs)
    buoys = [Point(*rng.uniform(0, [w, h])).buffer(rng.uniform(0.3, 0.6) / gsd) for _ in range(n)]
    img = _paint(img, buoys, rng, lambda r: (235, 120, 40), 0.0, texture=3)
    palette = [(235, 235, 235), (200, 60, 50), (220, 210, 180), (60, 60, 70)]

    def colour(r):
        return np.array(palette[r.integers(len(palette))], np.float32) + r.normal(0, 6, 3)

    img = _paint(img, objs, rng, colour, shade=0.3, shadow=(int(0.4 / gsd), int(0.4 / gsd)), texture=5)
    return Scene(_finish(img, rng), [(g, "boat") for g in objs], gsd, ["boat"])


def solar(rng: np.random.Generator, h: int, w: int, gsd: float, density: float = 1.0) -> Scene:
    """Solar panel tables in rows (segmentation: the area covered by panels), on gravel and grass."""
    img = _background(rng, h, w, (150, 145, 120), 14)
    objs: list[Polygon] = []
    tw, tl, gap = 3.0 / gsd, rng.uniform(12, 25) / gsd, rng.uniform(2.0, 3.5) / gsd
    ang = rng.normal(0, 4)
    y = rng.uniform(0, gap)
    while y < h:
        x = rng.uniform(0, tl / 2)
        while x < w:
            if rng.random() < 0.8 * density:
                objs.append(_rect(x + tl / 2, y + tw / 2, tl, tw, ang))
            x += tl + 0.8 / gsd
        y += tw + gap
    objs = _visible(objs)
    img = _paint(img, objs, rng, lambda r: (30 + r.normal(0, 4), 45 + r.normal(0, 4), 85 + r.normal(0, 6)),
                 shade=0.05, shadow=(int(1.2 / gsd), 0), texture=4)
    # module grid lines
    _, hh, ww = img.shape
    ids = rasterize(((g, 1) for g in objs), out_shape=(hh, ww), dtype="uint8").astype(bool)
    step = max(2, int(round(1.0 / gsd)))
    grid = np.zeros((hh, ww), bool)
    grid[:, ::step] = True
    img[:, ids & grid] += 35
    # distractor: dark water ponds
    ponds = [Point(*rng.uniform(0, [w, h])).buffer(rng.uniform(4, 9) / gsd) for _ in range(2)]
    img = _paint(img, ponds, rng, lambda r: (35, 55, 70), 0.0, texture=3)
    return Scene(_finish(img, rng), [(g, "solar_panel") for g in objs], gsd, ["solar_panel"], "segmentation")


GENERATORS: dict[str, Callable[..., Scene]] = {
    "trees": trees, "cars": cars, "buildings": buildings, "boats": boats, "solar": solar,
}


def make_scene(kind: str, seed: int, size: tuple[int, int] = (1024, 1024), gsd: float = 0.15,
               density: float = 1.0) -> Scene:
    """Generate one scene; the same (kind, seed, size, gsd, density) always gives the same pixels."""
    rng = np.random.default_rng(seed)
    h, w = size
    scene = GENERATORS[kind](rng, h, w, gsd, density)
    scene.transform = Affine(gsd, 0, SCENE_ORIGIN[0], 0, -gsd, SCENE_ORIGIN[1])
    return scene


def tiny_scene(seed: int = 0, size: int = 128, n: int = 6, radius: float = 9.0, touching: bool = True) -> Scene:
    """A very small, very easy scene (bright discs on dark ground) for unit tests."""
    rng = np.random.default_rng(seed)
    img = _background(rng, size, size, (60, 70, 50), 6)
    objs: list[Polygon] = []
    if touching:  # two discs that touch in the middle: must come out as two objects
        c = size / 2
        objs += [Point(c - radius, c).buffer(radius, 8), Point(c + radius + 0.5, c).buffer(radius, 8)]
    for x, y, r in _place(rng, size, size, n, lambda r: radius, min_sep=1.3, margin=radius + 2):
        g = Point(x, y).buffer(r, 8)
        if not any(g.buffer(3).intersects(o) for o in objs):
            objs.append(g)
    img = _paint(img, objs, rng, lambda r: (200, 190, 90), shade=0.3, texture=3)
    scene = Scene(_finish(img, rng, (1.0, 1.0), blur=0.3), [(g, "disc") for g in objs], 0.5, ["disc"])
    scene.transform = Affine(0.5, 0, SCENE_ORIGIN[0], 0, -0.5, SCENE_ORIGIN[1])
    return scene


def split_areas(scene: Scene, max_outlines: int = 100, area_px: int = 256, seed: int = 0
                ) -> tuple[list[Polygon], list[Polygon]]:
    """Training areas (left half, squares of ``area_px`` added while they cover <= ``max_outlines`` outlines)
    and accuracy areas (the right half, as two boxes), in pixel coordinates."""
    rng = np.random.default_rng(seed)
    _, h, w = scene.image.shape
    half = w // 2
    cells = [box(x, y, min(x + area_px, half), min(y + area_px, h))
             for y in range(0, h, area_px) for x in range(0, half, area_px)]
    rng.shuffle(cells)
    geoms = [g for g, _ in scene.objects]
    train: list[Polygon] = []
    used = 0
    for c in cells:
        n = sum(1 for g in geoms if g.intersects(c))
        if used + n > max_outlines:
            continue
        train.append(c)
        used += n
    acc = [box(half, 0, w, h // 2), box(half, h // 2, w, h)]
    return train, acc


def labelled_scene(scene: Scene, path: Path, max_outlines: int = 100, area_px: int = 256, seed: int = 0):
    """Write ``scene`` to ``path`` and return (LabelledImage with training/accuracy areas and the outlines
    touching training areas, truth objects in the image CRS)."""
    from .datasets import LabelledImage

    scene.write(path)
    train_px, acc_px = split_areas(scene, max_outlines, area_px, seed)
    train = [scene.to_crs(a) for a in train_px]
    acc = [scene.to_crs(a) for a in acc_px]
    truth = [(scene.to_crs(g), c) for g, c in scene.objects]
    outlines = [(g, c) for g, c in truth if any(g.intersects(a) for a in train)]
    return LabelledImage(str(path), train, outlines, acc), truth
