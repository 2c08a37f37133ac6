"""A generated sample orthophoto: the demo project's image and the tests' raster factory.

Seeded and made in code, so no image file is shipped: grass with texture, a road, and round tree
crowns whose outlines are returned with the image so tests know where the objects are.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import Point, Polygon

# Near Lausanne, Switzerland, in UTM zone 32N.
SAMPLE_ORIGIN = (316_000.0, 5_158_000.0)
SAMPLE_CRS = CRS.from_epsg(32632)


@dataclass
class SampleRaster:
    path: Path
    crs: CRS
    transform: Affine
    objects: list[Polygon]  # tree crowns, in the raster's CRS


def write_sample_geotiff(
    path: Path,
    size: int = 1024,
    gsd: float = 0.3,
    trees: int = 40,
    seed: int = 0,
    crs: CRS | None = SAMPLE_CRS,
    tiled: bool = False,
) -> SampleRaster:
    """Write a 3-band uint8 GeoTIFF of `size` x `size` pixels; `crs=None` writes one without georeferencing."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    grass = 90 + 18 * np.sin(xx / 23.0) * np.cos(yy / 31.0) + rng.normal(0, 6, (size, size))
    image = np.stack([grass * 0.75, grass * 1.1, grass * 0.55]).clip(0, 255)
    road = np.abs((yy - 0.35 * xx) - size * 0.55) < size * 0.03
    image[:, road] = np.array([150.0, 148.0, 140.0])[:, None]
    transform = Affine(gsd, 0, SAMPLE_ORIGIN[0], 0, -gsd, SAMPLE_ORIGIN[1]) if crs else Affine.identity()
    objects: list[Polygon] = []
    for _ in range(trees):
        radius = rng.uniform(6, 14)
        cx, cy = rng.uniform(radius, size - radius, 2)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= radius**2
        shade = 1 - 0.35 * np.clip(((xx - cx) + (yy - cy)) / (2 * radius), -1, 1)
        for band, value in enumerate((40.0, 85.0, 35.0)):
            image[band][inside] = (value * shade[inside]).clip(0, 255)
        crown_px = Point(cx, cy).buffer(radius, quad_segs=8)
        objects.append(Polygon([transform @ xy for xy in crown_px.exterior.coords]))
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "transform": transform,
        "photometric": "RGB",
    }
    if crs:
        profile["crs"] = crs
    if tiled:
        profile.update(tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(image.astype(np.uint8))
    return SampleRaster(path=path, crs=crs or CRS.from_epsg(3857), transform=transform, objects=objects)
