"""Large benchmark rasters, generated strip by strip so writing them never holds the image in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.windows import Window

STRIP = 512


def write_striped_geotiff(path: Path, size: int, gsd: float) -> None:
    """A striped, uncompressed 3-band uint8 GeoTIFF near Lausanne (EPSG:32632) like a camera export:
    smooth texture plus noise, so it compresses like real imagery rather than like a flat colour."""
    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32632",
        "transform": Affine(gsd, 0, 316000, 0, -gsd, 5158000),
        "BIGTIFF": "IF_SAFER",
        "photometric": "RGB",
    }
    xx = np.arange(size, dtype=np.float32)
    tint = np.array([0.8, 1.1, 0.6])[:, None, None]
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, STRIP):
            height = min(STRIP, size - row)
            yy = np.arange(row, row + height, dtype=np.float32)[:, None]
            base = 100 + 40 * np.sin(xx / 97.0) * np.cos(yy / 61.0)
            noise = rng.integers(0, 24, (3, height, size), dtype=np.uint8)
            dst.write((base[None] * tint).astype(np.uint8) + noise, window=Window(0, row, size, height))
