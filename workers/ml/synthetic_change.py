"""Procedural, seeded pairs of one place at two dates with an exact list of what changed, for change detection
tests and experiments (``workers.ml.synthetic`` paints the single-image scenes; its helpers paint these).

Each pair holds the change a detector must find and the changes it must ignore, so that a pixel difference
alone fails: between the dates the light and colour change (gain, gradient, season), the sun moves (shadows
fall elsewhere), the second image is shifted by a pixel or two (registration), and objects that do not count
are added, removed or moved. Which change is labelled depends on the kind:

- ``buildings-new``: new buildings (present after, not before), outlined as they appear on the second date.
  Ignored: demolished buildings (bare ground after), repainted roofs, vehicles that moved.
- ``trees-cleared``: felled trees (present before, gone after: clearings and single trees), outlined as they
  appear on the first date. Ignored: young trees planted since, the crowns' change of colour with the season,
  vehicles that moved.

Outlines are pixel polygons on the first date's grid (x right, y down), like ``Scene.objects``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from affine import Affine
from rasterio.features import rasterize
from scipy import ndimage
from shapely import affinity
from shapely.geometry import Point, Polygon
from shapely.geometry.base import BaseGeometry

from .synthetic import SCENE_CRS, SCENE_ORIGIN, Scene, _background, _blob, _finish, _noise, _place, _rect, _visible

Colour = tuple[float, float, float]


@dataclass
class ScenePair:
    """Two dates of one generated place (each a ``Scene`` on the same grid) and the labelled changes."""

    before: Scene
    after: Scene
    changes: list[tuple[Polygon, str]]
    classes: list[str]
    shift: tuple[float, float]  # (dx, dy) pixels by which the second date is misregistered

    def write(self, folder: Path) -> tuple[Path, Path]:
        """Both dates as GeoTIFFs (``before.tif``, ``after.tif``) in ``folder``."""
        return self.before.write(folder / "before.tif"), self.after.write(folder / "after.tif")

    def to_crs(self, geom: BaseGeometry) -> BaseGeometry:
        return self.before.to_crs(geom)


def _paint_fixed(img: np.ndarray, objects: list[Polygon], colours: list[Colour], rng: np.random.Generator,
                 shade: float, shadow: tuple[int, int], texture: float, shadow_dark: float = 0.55) -> np.ndarray:
    """``synthetic._paint`` with each object's colour given (an object unchanged between the dates keeps it)."""
    _, h, w = img.shape
    if not objects:
        return img
    ids = rasterize(((g, i + 1) for i, g in enumerate(objects)), out_shape=(h, w), dtype="int32")
    fg = ids > 0
    if shadow != (0, 0):
        sh = (ndimage.shift(fg.astype(np.float32), shadow, order=0) > 0.5) & ~fg
        img[:, sh] *= shadow_dark
    dist = ndimage.distance_transform_edt(fg)
    tex = _noise(rng, (h, w), 1.0)
    for i, sl in enumerate(ndimage.find_objects(ids)):
        if sl is None:
            continue
        sel = ids[sl] == i + 1
        d = dist[sl][sel]
        light = (1.0 - shade) + shade * d / (d.max() + 1e-6)
        for b in range(3):
            img[b][sl][sel] = colours[i][b] * light + texture * tex[sl][sel]
    return img


def _vehicles(rng: np.random.Generator, h: int, w: int, gsd: float, n: int) -> list[Polygon]:
    return [_rect(*rng.uniform(0, [w, h]), rng.uniform(4.2, 6.5) / gsd, rng.uniform(1.8, 2.4) / gsd,
                  rng.uniform(0, 180)) for _ in range(n)]


def _moved(rng: np.random.Generator, vehicles: list[Polygon], h: int, w: int, share: float = 0.6) -> list[Polygon]:
    """The vehicles at the second date: ``share`` of them driven somewhere else."""
    return [affinity.translate(v, *(rng.uniform(0, [w, h]) - np.asarray(v.centroid.coords[0])))
            if rng.random() < share else v for v in vehicles]


def _vehicle_colours(rng: np.random.Generator, n: int) -> list[Colour]:
    palette = [(230, 230, 230), (30, 30, 35), (150, 20, 25), (40, 60, 140), (200, 190, 170)]
    return [tuple(np.asarray(palette[rng.integers(len(palette))], float) + rng.normal(0, 8, 3)) for _ in range(n)]


def _register(image: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """The second date misregistered by (dx, dy) pixels (sub-pixel, bilinear)."""
    out = ndimage.shift(image.astype(np.float32), (0, shift[1], shift[0]), order=1, mode="nearest")
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _shift(rng: np.random.Generator) -> tuple[float, float]:
    return tuple(float(rng.choice([-1, 1]) * rng.uniform(0.5, 2.0)) for _ in range(2))  # type: ignore[return-value]


def buildings_new(rng: np.random.Generator, h: int, w: int, gsd: float, density: float = 1.0) -> ScenePair:
    """Buildings built between the dates (labelled), among buildings demolished, roofs repainted and moved
    vehicles (not labelled), on ground whose colour changes with the season."""
    ground = _background(rng, h, w, (120, 135, 95), 12)
    road = np.zeros((h, w), bool)
    for _ in range(3):
        c = int(rng.uniform(0, h if rng.random() < 0.5 else w))
        if rng.random() < 0.5:
            road[max(0, c - int(4 / gsd)) : c + int(4 / gsd), :] = True
        else:
            road[:, max(0, c - int(4 / gsd)) : c + int(4 / gsd)] = True
    ground[:, road] = ground[:, road] * 0.2 + 110 * 0.8
    n = int(density * h * w * gsd * gsd / 900)
    placed = _place(rng, h, w, n, lambda r: rng.uniform(5, 11) / gsd, min_sep=1.0)
    objs = []
    for x, y, r in placed:
        ang = rng.choice([0, 90]) + rng.normal(0, 10)
        g = _rect(x, y, 2 * r, 2 * r * rng.uniform(0.5, 0.9), ang)
        if rng.random() < 0.3:  # L-shape
            g = g.union(_rect(x + r * 0.5, y + r * 0.5, r * 1.2, r * 0.9, ang))
        objs.append(g)
    objs = _visible(objs)
    state = rng.choice(["both", "new", "gone"], size=len(objs), p=[0.55, 0.3, 0.15])
    palette = [(170, 80, 60), (120, 120, 125), (200, 195, 185), (90, 60, 50), (60, 70, 80)]

    def roof() -> Colour:
        return tuple(np.asarray(palette[rng.integers(len(palette))], float) + rng.normal(0, 10, 3))

    colour = [roof() for _ in objs]
    repainted = [roof() if s == "both" and rng.random() < 0.3 else c for s, c in zip(state, colour, strict=True)]
    cars = _vehicles(rng, h, w, gsd, n // 2)
    car_colours = _vehicle_colours(rng, len(cars))
    # the first date
    before = ground.copy()
    keep = [i for i, s in enumerate(state) if s != "new"]
    before = _paint_fixed(before, cars, car_colours, rng, 0.15, (int(0.5 / gsd), int(0.3 / gsd)), 4)
    before = _paint_fixed(before, [objs[i] for i in keep], [colour[i] for i in keep], rng, 0.2,
                          (int(2 / gsd), int(1.5 / gsd)), 5)
    # the second date: another season (greener or drier ground), another sun, demolished lots bare
    season = np.asarray(rng.uniform([0.85, 0.9, 0.8], [1.15, 1.1, 1.2]), np.float32)[:, None, None]
    after = ground * season + _noise(rng, (h, w), 3.0)[None] * 4
    gone = [objs[i] for i, s in enumerate(state) if s == "gone"]
    after = _paint_fixed(after, [affinity.scale(g, 1.1, 1.1) for g in gone],
                         [tuple(rng.uniform([140, 120, 90], [175, 150, 115])) for _ in gone], rng, 0.0, (0, 0), 9)
    now = [i for i, s in enumerate(state) if s != "gone"]
    after = _paint_fixed(after, _moved(rng, cars, h, w), car_colours, rng, 0.15, (int(0.4 / gsd), -int(0.4 / gsd)), 4)
    after = _paint_fixed(after, [objs[i] for i in now], [repainted[i] for i in now], rng, 0.2,
                         (int(1.2 / gsd), -int(1.8 / gsd)), 5)
    shift = _shift(rng)
    new = [affinity.translate(objs[i], *shift) for i, s in enumerate(state) if s == "new"]
    return _pair(_finish(before, rng), _register(_finish(after, rng), shift), gsd, new, "new building", shift)


def trees_cleared(rng: np.random.Generator, h: int, w: int, gsd: float, density: float = 1.0) -> ScenePair:
    """Trees felled between the dates (labelled: clearings and single trees), among young trees planted since,
    crowns that change colour with the season and moved vehicles (not labelled)."""
    ground = _background(rng, h, w, (rng.uniform(110, 150), rng.uniform(125, 160), rng.uniform(80, 110)), 14)
    soil = _noise(rng, (h, w), 40) > 0.6
    ground[:, soil] = ground[:, soil] * 0.6 + np.array([150, 130, 100])[:, None] * 0.4
    n = int(density * h * w * gsd * gsd / 90)
    placed = _place(rng, h, w, n, lambda r: rng.uniform(2.0, 4.5) / gsd, min_sep=0.85)
    crowns = _visible([_blob(rng, x, y, r) for x, y, r in placed])
    # clearings spread over the whole image (every other one on each half), and a few single trees felled
    zones = [Point(rng.uniform(0.05, 0.45) * w + (w / 2 if k % 2 else 0), rng.uniform(0.05, 0.95) * h)
             .buffer(rng.uniform(12, 25) / gsd) for k in range(8)]
    felled = [any(z.contains(g.centroid) for z in zones) or rng.random() < 0.05 for g in crowns]
    green = [tuple(rng.uniform([25, 65, 20], [60, 105, 45])) for _ in crowns]
    # the season: every crown yellows or darkens by its own amount
    autumn = [tuple(np.asarray(c) * rng.uniform([1.2, 0.95, 0.9], [1.9, 1.25, 1.2])) for c in green]
    young = [_blob(rng, x, y, r) for x, y, r in _place(rng, h, w, n // 6, lambda r: rng.uniform(1.0, 1.8) / gsd)]
    young = [g for g in young if not any(g.intersects(c) for c in crowns)]
    cars = _vehicles(rng, h, w, gsd, max(4, n // 40))
    car_colours = _vehicle_colours(rng, len(cars))
    before = _paint_fixed(ground.copy(), cars, car_colours, rng, 0.15, (int(0.5 / gsd), int(0.3 / gsd)), 4)
    before = _paint_fixed(before, crowns, green, rng, 0.6, (int(0.8 / gsd), int(0.6 / gsd)), 10)
    after = ground * np.asarray(rng.uniform([0.9, 0.85, 0.85], [1.15, 1.05, 1.1]), np.float32)[:, None, None]
    stumps = [g for g, f in zip(crowns, felled, strict=True) if f]
    after = _paint_fixed(after, stumps, [tuple(rng.uniform([120, 100, 70], [165, 140, 105])) for _ in stumps], rng,
                         0.0, (0, 0), 14)
    standing = [i for i, f in enumerate(felled) if not f]
    after = _paint_fixed(after, _moved(rng, cars, h, w), car_colours, rng, 0.15, (-int(0.5 / gsd), int(0.3 / gsd)), 4)
    young_colours = [tuple(rng.uniform([30, 80, 25], [55, 120, 45])) for _ in young]
    after = _paint_fixed(after, young + [crowns[i] for i in standing], young_colours + [autumn[i] for i in standing],
                         rng, 0.6, (-int(0.7 / gsd), int(0.8 / gsd)), 10)
    shift = _shift(rng)
    return _pair(_finish(before, rng), _register(_finish(after, rng), shift), gsd, stumps, "felled tree", shift)


def _pair(before: np.ndarray, after: np.ndarray, gsd: float, changes: list[Polygon], name: str,
          shift: tuple[float, float]) -> ScenePair:
    transform = Affine(gsd, 0, SCENE_ORIGIN[0], 0, -gsd, SCENE_ORIGIN[1])
    scenes = [Scene(img, [], gsd, [name], transform=transform, crs=SCENE_CRS) for img in (before, after)]
    return ScenePair(scenes[0], scenes[1], [(g, name) for g in changes if g.area > 4], [name], shift)


PAIR_GENERATORS: dict[str, Callable[..., ScenePair]] = {"buildings-new": buildings_new, "trees-cleared": trees_cleared}


def make_pair(kind: str, seed: int, size: tuple[int, int] = (1024, 1024), gsd: float = 0.25,
              density: float = 1.0) -> ScenePair:
    """Generate one pair; the same arguments always give the same pixels."""
    return PAIR_GENERATORS[kind](np.random.default_rng(seed), size[0], size[1], gsd, density)


def tiny_pair(seed: int = 0, size: int = 128, gsd: float = 0.5) -> ScenePair:
    """A small, easy pair for unit tests: bright discs on dark ground, half only on the second date (the
    labelled change), a quarter only on the first, the second date brighter and shifted by a pixel."""
    rng = np.random.default_rng(seed)
    ground = _background(rng, size, size, (60, 70, 50), 6)
    n = max(6, size * size // 1200)
    discs = [Point(x, y).buffer(r, 8) for x, y, r in _place(rng, size, size, n, lambda r: 7.0, min_sep=1.4, margin=9)]
    state = (["new", "both", "gone", "new"] * len(discs))[: len(discs)]
    colour = [(200.0, 190.0, 90.0)] * len(discs)
    first = [g for g, s in zip(discs, state, strict=True) if s != "new"]
    second = [g for g, s in zip(discs, state, strict=True) if s != "gone"]
    before = _paint_fixed(ground.copy(), first, colour, rng, 0.3, (0, 0), 3)
    after = _paint_fixed(ground * 1.15, second, colour, rng, 0.3, (0, 0), 3)
    shift = (1.0, -1.0)
    new = [affinity.translate(g, *shift) for g, s in zip(discs, state, strict=True) if s == "new"]
    return _pair(_finish(before, rng, (1.0, 1.0), 0.3), _register(_finish(after, rng, (1.0, 1.0), 0.3), shift),
                 gsd, new, "new disc", shift)
