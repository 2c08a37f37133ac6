"""Raster inspection and Cloud-Optimized GeoTIFF conversion. Plain functions, no Django.

Conversion is streamed by GDAL block by block (rio-cogeo), so memory stays bounded whatever the
image size. Non-georeferenced images (PNG, JPEG, or a TIFF without CRS and geotransform) are placed
as the public API's convention says: EPSG:3857, origin at (0, 0), 0.1 unit pixels, so the official
client's `nongeo_result_to_pixel` can turn results back into pixels.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform as warp_transform
from rio_cogeo.cogeo import cog_translate, cog_validate
from rio_cogeo.profiles import cog_profiles
from shapely.geometry import Polygon

from imagery.gdal_safety import GTIFF, JP2, JPEG, PNG, open_options, upload_gdal_options

NONGEO_CRS = CRS.from_epsg(3857)
NONGEO_TRANSFORM = Affine(0.1, 0.0, 0.0, 0.0, -0.1, 0.0)
# 100,000 x 100,000 px: twice the side of the largest images users bring.
MAX_PIXELS = 100_000 * 100_000
# RGB, RGBA and multispectral imagery (e.g. 8-13 band satellite products) stay well under 16 bands; 32 leaves
# room while refusing headers that declare hundreds or thousands of bands to make every read huge.
MAX_BANDS = 32
# The largest piece (tile or strip, all bands together) GDAL must decompress at once; a file stored as one
# enormous compressed block would otherwise be decompressed whole, once per window read. 512 x 512 x 4 x
# float64 is 8 MiB; a single-strip 9,000 x 9,000 RGB image is 243 MiB and still fits.
MAX_BLOCK_BYTES = 256 * 1024**2
# Enough of the file's start to recognise every accepted format.
SNIFF_BYTES = 16
SUPPORTED_DTYPES = {"uint8", "uint16", "int16", "uint32", "int32", "float32", "float64"}
COG_BLOCK_SIZE = 512

ACCEPTED_FORMATS = "GeoTIFF, JPEG 2000, PNG, JPEG"
#: The one message for a file we cannot read, whatever the reason (unknown format, damaged, truncated): GDAL's
#: own words name server paths and library internals, so they go to the log at most, never to the user.
NOT_AN_IMAGE = f"This file is not an image we can read (accepted: {ACCEPTED_FORMATS})"
#: What GDAL and rasterio raise on a file they cannot make sense of (RasterioIOError is a RasterioError).
UNREADABLE_ERRORS = (RasterioError, CPLE_BaseError)
#: Leading bytes of each accepted format and the one GDAL driver allowed to open it.
SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"II*\x00", GTIFF),  # TIFF, little-endian
    (b"MM\x00*", GTIFF),  # TIFF, big-endian
    (b"II+\x00", GTIFF),  # BigTIFF, little-endian
    (b"MM\x00+", GTIFF),  # BigTIFF, big-endian
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", JP2),  # JPEG 2000 (JP2 signature box)
    (b"\xff\x4f\xff\x51", JP2),  # raw JPEG 2000 codestream (SOC + SIZ markers)
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
)
FORMAT_NAMES = {GTIFF: "GeoTIFF", JP2: "JPEG 2000", PNG: "PNG", JPEG: "JPEG"}


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
    #: The one GDAL driver allowed to read the original (from its leading bytes).
    driver: str = GTIFF

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


@functools.cache
def _available_drivers() -> frozenset[str]:
    with rasterio.Env() as env:
        return frozenset(env.drivers())


def sniff_driver(head: bytes) -> str:
    """The GDAL driver for a file starting with ``head``, or RasterRejected: GDAL never sees other formats.

    Recognising the format ourselves, before GDAL, is what keeps VRT, XML/GML and multi-file formats (ENVI,
    ERDAS .img, netCDF, ASCII grids...) out: those name or read other files and URLs.
    """
    for magic, driver in SIGNATURES:
        if head.startswith(magic):
            if driver not in _available_drivers():
                raise RasterRejected(
                    f"{FORMAT_NAMES[driver]} files cannot be read on this server. "
                    f"Convert the image to GeoTIFF and upload it again."
                )
            return driver
    raise RasterRejected(NOT_AN_IMAGE)


def _local_head_and_size(path: str) -> tuple[bytes, int]:
    if path.startswith("/vsi"):
        raise ValueError("pass head= and size= for a file GDAL reads through a /vsi file system")
    with open(path, "rb") as fh:
        return fh.read(SNIFF_BYTES), os.fstat(fh.fileno()).st_size


def open_upload(path: str, driver: str) -> rasterio.DatasetReader:
    """Open an uploaded file with ``driver`` only; call inside ``rasterio.Env(**upload_gdal_options(path))``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            src = rasterio.open(path, driver=driver, sharing=False, **open_options(driver))
        except UNREADABLE_ERRORS as exc:
            raise RasterRejected(NOT_AN_IMAGE) from exc
    if src.driver != driver:  # rasterio passes `driver` to GDAL as the only allowed one; never trust, check
        src.close()
        raise RasterRejected(NOT_AN_IMAGE)
    return src


def _check_limits(src: rasterio.DatasetReader, size: int) -> None:
    """Refuse, from the header alone, files whose declared shape would make reading them take huge memory."""
    if src.count < 1:
        raise RasterRejected("The file has no image bands.")
    if src.count > MAX_BANDS:
        raise RasterRejected(
            f"The image has {src.count:,} bands; at most {MAX_BANDS} are supported. Keep the bands you need "
            "(e.g. red, green, blue, near-infrared) and upload it again."
        )
    if src.width * src.height > MAX_PIXELS:
        raise RasterRejected(
            f"The image is {src.width:,} x {src.height:,} pixels, more than the {MAX_PIXELS:,} pixels supported."
        )
    dtypes = set(src.dtypes)
    if len(dtypes) > 1:
        raise RasterRejected("The bands have different pixel types; all bands must have the same type.")
    dtype = src.dtypes[0]
    if dtype not in SUPPORTED_DTYPES:
        raise RasterRejected(f"Pixels of type {dtype} are not supported (8/16/32-bit integers or floats).")
    item = np.dtype(dtype).itemsize
    block_bytes = max(h * w for h, w in src.block_shapes) * item * src.count
    if block_bytes > MAX_BLOCK_BYTES:
        rows, cols = max(src.block_shapes, key=lambda shape: shape[0] * shape[1])
        raise RasterRejected(
            f"The image is stored in pieces of {cols:,} x {rows:,} pixels x {src.count} bands "
            f"({block_bytes / 1024**2:,.0f} MiB each); at most {MAX_BLOCK_BYTES // 1024**2} MiB per piece can be "
            "read. Save it as a tiled GeoTIFF (e.g. 512 x 512 tiles) and upload it again."
        )
    if src.driver == GTIFF and src.compression is None:
        # Uncompressed: the pixels the header declares must be in the file. A tiny file declaring a huge
        # image is truncated (or crafted) and would otherwise be "converted" for hours from nothing.
        bits = int(src.tags(1, ns="IMAGE_STRUCTURE").get("NBITS") or item * 8)
        declared = math.ceil(src.width * bits / 8) * src.height * src.count
        if size < declared:
            raise RasterRejected(NOT_AN_IMAGE)


def inspect_raster(path: str, *, head: bytes | None = None, size: int | None = None) -> RasterInfo:
    """Open the file and check it can become an image, or raise RasterRejected saying why.

    ``path`` is ours (a blob-store path, never a user-supplied name). ``head`` (its first SNIFF_BYTES bytes)
    and ``size`` are read from the blob store; for a local path they are read from the file when omitted.
    """
    if head is None or size is None:
        local_head, local_size = _local_head_and_size(path)
        head = local_head if head is None else head
        size = local_size if size is None else size
    driver = sniff_driver(head)
    try:
        return _inspect_open(path, driver, size)
    except UNREADABLE_ERRORS as exc:
        raise RasterRejected(NOT_AN_IMAGE) from exc


def _inspect_open(path: str, driver: str, size: int) -> RasterInfo:
    with rasterio.Env(**upload_gdal_options(path)), open_upload(path, driver) as src:
        _check_limits(src, size)
        transform = src.transform
        if src.crs is None:
            if src.gcps[0]:
                raise RasterRejected(
                    "The image is placed by ground control points, not a geotransform. Warp it first "
                    "(e.g. with gdalwarp), or upload it as PNG/JPEG to use it without georeferencing."
                )
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
            dtype=src.dtypes[0],
            crs=crs,
            transform=transform,
            nodata=None if nodata is None or math.isnan(nodata) else float(nodata),
            is_georeferenced=georeferenced,
            display_bands=_display_bands(src),
            driver=driver,
        )


def convert_to_cog(src_path: str, dst_path: Path, info: RasterInfo, workdir: Path) -> None:
    """Write a validated, ZSTD-compressed, 512-px-tiled COG with overviews to `dst_path`.

    ZSTD (with the horizontal predictor) rather than deflate: files of about the same size that decompress about
    twice as fast, and every window a detection cell or a map tile reads is decompressed (docs/experiments.md,
    "ZSTD COGs"); GDAL has read ZSTD GeoTIFFs since 2.3 (QGIS included).

    The original is opened again with the driver ``inspect_raster`` chose and handed to rio-cogeo as an
    open dataset, so nothing re-chooses a driver; a non-georeferenced image gets the convention's CRS and
    geotransform as creation options of the output (no intermediate VRT). ``workdir`` is kept for callers.
    """
    del workdir
    profile = cog_profiles.get("deflate")  # rio-cogeo warns on its "zstd" profile name: the same one, recompressed
    profile.update(compress="ZSTD", blockxsize=COG_BLOCK_SIZE, blockysize=COG_BLOCK_SIZE, BIGTIFF="IF_SAFER")
    if not info.is_georeferenced:
        profile.update(crs=NONGEO_CRS, transform=NONGEO_TRANSFORM)
    if info.dtype in ("uint8", "uint16", "int16", "uint32", "int32"):
        profile.update(predictor=2)
    elif info.dtype.startswith("float"):
        profile.update(predictor=3)
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(rasterio.Env(**upload_gdal_options(src_path)))
            src = stack.enter_context(open_upload(src_path, info.driver))
            if src.gcps[1] is not None and not src.gcps[0]:
                # JPEG 2000 reports a GCP CRS with no GCPs, and rio-cogeo then warps by an all-zero transform
                # ("Cannot invert geotransform"); an identity warped view on the same grid hides the empty GCPs.
                src = stack.enter_context(WarpedVRT(src))
            cog_translate(
                src,
                str(dst_path),
                profile,
                overview_resampling="average",
                quiet=True,
                in_memory=False,
                temporary_compression="ZSTD",
                # A fixed block cache keeps peak memory flat whatever the image and machine size (GDAL's default
                # is 5 % of RAM); 512 MiB converts as fast as the default here. rasterio takes it in bytes.
                config={
                    "GDAL_NUM_THREADS": "ALL_CPUS",
                    "GDAL_TIFF_INTERNAL_MASK": True,
                    "GDAL_CACHEMAX": 512 * 1024**2,
                },
            )
    except UNREADABLE_ERRORS as exc:
        raise RasterRejected(NOT_AN_IMAGE) from exc
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
