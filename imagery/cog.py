"""Raster inspection and Cloud-Optimized GeoTIFF conversion. Plain functions, no Django.

Conversion is streamed by GDAL block by block (rio-cogeo), so memory stays bounded whatever the
image size. Non-georeferenced images (PNG, JPEG, or a TIFF without CRS and geotransform) are placed
as the public API's convention says: EPSG:3857, origin at (0, 0), 0.1 unit pixels, so the official
client's `nongeo_result_to_pixel` can turn results back into pixels.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import RasterioIOError
from rasterio.warp import transform as warp_transform
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import Polygon

NONGEO_CRS = CRS.from_epsg(3857)
NONGEO_TRANSFORM = Affine(0.1, 0.0, 0.0, 0.0, -0.1, 0.0)
# 100,000 x 100,000 px: twice the side of the largest images users bring.
MAX_PIXELS = 100_000 * 100_000
SUPPORTED_DTYPES = {"uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
COG_BLOCK_SIZE = 512


class RasterRejected(Exception):
    """The file cannot become an image; the message is written for the person who uploaded it."""


@dataclass
class RasterInfo:
    width: int
    height: int
    band_count: int
    dtype: str
    crs: CRS
    transform: Affine
    nodata: float | None
    is_georeferenced: bool
    display_bands: list[int] = field(default_factory=list)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) in the image CRS."""
        left, top = self.transform @ (0, 0)
        right, bottom = self.transform @ (self.width, self.height)
        return (min(left, right), min(top, bottom), max(left, right), max(top, bottom))

    @property
    def gsd(self) -> float:
        """Ground sample distance in metres per pixel (approximate for geographic CRSs)."""
        pixel = math.hypot(self.transform.a, self.transform.d)
        if self.crs.is_geographic:
            lat = (self.bounds[1] + self.bounds[3]) / 2
            return pixel * 111_320.0 * math.cos(math.radians(lat))
        if not self.is_georeferenced:
            return pixel
        return pixel * self.crs.linear_units_factor[1]

    def footprint_lonlat(self, points_per_edge: int = 16) -> Polygon:
        """The image outline in EPSG:4326, densified so curved edges in lon/lat stay close to the truth."""
        cols = np.linspace(0, self.width, points_per_edge + 1)
        rows = np.linspace(0, self.height, points_per_edge + 1)
        ring_px = (
            [(c, 0) for c in cols[:-1]]
            + [(self.width, r) for r in rows[:-1]]
            + [(c, self.height) for c in cols[::-1][:-1]]
            + [(0, r) for r in rows[::-1]]
        )
        xs, ys = zip(*(self.transform @ p for p in ring_px), strict=True)
        lons, lats = warp_transform(self.crs, CRS.from_epsg(4326), list(xs), list(ys))
        return Polygon(zip(lons, lats, strict=True)).buffer(0)


def _display_bands(src) -> list[int]:
    interp = list(src.colorinterp)
    wanted = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    if all(c in interp for c in wanted):
        return [interp.index(c) + 1 for c in wanted]
    data_bands = [i + 1 for i, c in enumerate(interp) if c != ColorInterp.alpha] or [1]
    if len(data_bands) >= 3:
        return data_bands[:3]
    return [data_bands[0]] * 3


def inspect_raster(path: str) -> RasterInfo:
    """Open the file and check it can become an image, or raise RasterRejected saying why."""
    try:
        src = rasterio.open(path)
    except RasterioIOError as exc:
        raise RasterRejected(
            "The file is not an image we can read (GeoTIFF, PNG or JPEG expected). "
            f"It may be corrupt or truncated. Details: {exc}"
        ) from exc
    with src:
        if src.count < 1:
            raise RasterRejected("The file has no image bands.")
        if src.width * src.height > MAX_PIXELS:
            raise RasterRejected(
                f"The image is {src.width:,} x {src.height:,} pixels, more than the {MAX_PIXELS:,} pixels supported."
            )
        dtype = src.dtypes[0]
        if dtype not in SUPPORTED_DTYPES:
            raise RasterRejected(f"Pixels of type {dtype} are not supported (8/16/32-bit integers or floats).")
        transform = src.transform
        if src.crs is None:
            if not transform.is_identity:
                raise RasterRejected(
                    "The image has a geotransform but no coordinate reference system (CRS), so it cannot be "
                    "placed on the map. Re-export it with its CRS, or upload it as PNG/JPEG to use it "
                    "without georeferencing."
                )
            crs, transform, georeferenced = NONGEO_CRS, NONGEO_TRANSFORM, False
        else:
            crs, georeferenced = src.crs, True
            if transform.b != 0 or transform.d != 0:
                raise RasterRejected(
                    "The image is rotated (its geotransform is not north-up). Warp it to north-up first, "
                    "e.g. with gdalwarp."
                )
        nodata = src.nodata
        return RasterInfo(
            width=src.width,
            height=src.height,
            band_count=src.count,
            dtype=dtype,
            crs=crs,
            transform=transform,
            nodata=None if nodata is None or math.isnan(nodata) else float(nodata),
            is_georeferenced=georeferenced,
            display_bands=_display_bands(src),
        )


def _placed_source(path: str, workdir: Path) -> str:
    """A VRT that gives a non-georeferenced image the convention's CRS and geotransform, without copying pixels."""
    vrt_path = workdir / "placed.vrt"
    rasterio.shutil.copy(path, vrt_path, driver="VRT")
    tree = ET.parse(vrt_path)
    root = tree.getroot()
    for tag in ("SRS", "GeoTransform"):
        for element in root.findall(tag):
            root.remove(element)
    srs = ET.Element("SRS")
    srs.text = NONGEO_CRS.to_wkt()
    geotransform = ET.Element("GeoTransform")
    geotransform.text = ", ".join(repr(v) for v in NONGEO_TRANSFORM.to_gdal())
    root.insert(0, geotransform)
    root.insert(0, srs)
    tree.write(vrt_path)
    return str(vrt_path)


def convert_to_cog(src_path: str, dst_path: Path, info: RasterInfo, workdir: Path) -> None:
    """Write a validated, deflate-compressed, 512-px-tiled COG with overviews to `dst_path`."""
    source = src_path if info.is_georeferenced else _placed_source(src_path, workdir)
    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=COG_BLOCK_SIZE, blockysize=COG_BLOCK_SIZE, BIGTIFF="IF_SAFER")
    if info.dtype in ("uint8", "uint16", "int16", "uint32", "int32"):
        profile.update(predictor=2)
    elif info.dtype.startswith("float"):
        profile.update(predictor=3)
    try:
        cog_translate(
            source,
            str(dst_path),
            profile,
            overview_resampling="average",
            quiet=True,
            in_memory=False,
            temporary_compression="DEFLATE",
            # A fixed block cache keeps peak memory flat whatever the image and machine size (GDAL's default
            # is 5 % of RAM); 512 MiB converts as fast as the default here. rasterio takes it in bytes.
            config={"GDAL_NUM_THREADS": "ALL_CPUS", "GDAL_TIFF_INTERNAL_MASK": True, "GDAL_CACHEMAX": 512 * 1024**2},
        )
    except RasterioIOError as exc:
        raise RasterRejected(
            f"The image data could not be read to the end; the file may be truncated. ({exc})"
        ) from exc
    valid, errors, _warnings = cog_validate(str(dst_path), quiet=True)
    if not valid:
        raise RuntimeError(f"Converted file is not a valid COG: {'; '.join(errors)}")


def display_rescale(cog_path: str, bands: list[int], max_side: int = 1024) -> list[list[float]]:
    """Per-band [min, max] for display and models: 2nd/98th percentiles read from a small overview."""
    with rasterio.open(cog_path) as src:
        if src.dtypes[0] == "uint8":
            return [[0.0, 255.0] for _ in range(src.count)]
        scale = max(src.width, src.height) / max_side
        shape = (max(1, int(src.height / scale)), max(1, int(src.width / scale))) if scale > 1 else src.shape
        data = src.read(out_shape=(src.count, *shape), masked=True)
    ranges = []
    for band in data:
        values = band.compressed()
        values = values[np.isfinite(values)]
        if values.size == 0:
            ranges.append([0.0, 1.0])
            continue
        low, high = np.percentile(values, [2, 98])
        ranges.append([float(low), float(high if high > low else low + 1)])
    return ranges
