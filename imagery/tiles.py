"""XYZ map tiles (Web Mercator) rendered from an image's Cloud-Optimized GeoTIFF. Plain functions, no Django.

A tile is a function of the COG and a handful of display parameters::

    render_tile(path, z, x, y, tilesize=256, fmt="png", bands=(1, 2, 3), rescale=[(0, 255)] * 3, ...) -> bytes | None

``None`` means "nothing to draw here": the tile is outside the image (decided from the image's Web Mercator
bounds before any file is opened when the caller passes ``mercator_bounds``) or holds only nodata. The caller
answers that with ``empty_tile()`` (a transparent PNG/WebP built once per process) or a 404 for JPEG, which
has no transparency.

What keeps it fast:

* readers are cached per thread, keyed by path and COG version, so a tile costs the window reads and the
  encoding, not an open of the COG (headers, overview list) each time; a new version of the same path closes
  the old reader. Per *thread* because a GDAL dataset must not be used by two threads at once;
* GDAL options suited to serving tiles (``TILE_GDAL_ENV``): a bounded block cache shared by the threads of a
  process, no directory listing next to the COG, and for ``/vsigs/`` a cache of fetched byte ranges;
* 8-bit data whose rescaling is the identity is not rescaled; fully opaque tiles are encoded without alpha.

Tile coordinates are XYZ on the WebMercatorQuad grid (EPSG:3857, 256 px tiles); ``tilesize=512`` renders the
same extent at twice the pixel density (``@2x`` tiles for high-DPI screens), as TiTiler does.
"""

from __future__ import annotations

import functools
import io
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Literal

import morecantile
import numpy as np
import rasterio
from PIL import Image as PILImage
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform, transform_bounds
from rio_tiler.errors import TileOutsideBounds
from rio_tiler.io import Reader
from rio_tiler.models import ImageData

TileFormat = Literal["png", "jpeg", "webp"]
FORMATS: dict[str, str] = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
TILE_SIZES = (256, 512)
# Pixels of the neighbouring tiles repeated around a tile (a "gutter"), 0 or 1. A map that scales tiles (any zoom
# between or beyond the tile levels) smooths each one on its own: without its neighbours' pixels at hand, the
# last row and column are smoothed against themselves, which shows as faint seams on a grid. With a 1-pixel
# buffer the map (OpenLayers' `gutter`) crops it and smooths across tile edges as inside a tile.
TILE_BUFFERS = (0, 1)

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
MIN_ZOOM = WEB_MERCATOR.minzoom
MAX_ZOOM = WEB_MERCATOR.maxzoom
_MERCATOR_CRS = CRS.from_epsg(3857)
_LONLAT_CRS = CRS.from_epsg(4326)
_GRID_SIZE = 256  # pixels of one WebMercatorQuad tile

#: GDAL options for tile rendering. GDAL_CACHEMAX (bytes, as rasterio takes it) is read once per process, at
#: the first block read: the block cache is shared by all threads of a process.
TILE_GDAL_ENV: dict[str, str | int] = {
    "GDAL_CACHEMAX": 256 * 1024 * 1024,
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_BAND_BLOCK_CACHE": "HASHSET",
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": 32 * 1024 * 1024,
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif",
}
#: Readers kept open per thread (each holds a file handle and the COG's parsed header).
READER_CACHE_SIZE = 32

# PNG compression trades CPU for bytes; level 3 is close to level 6 in size on imagery and much faster.
_PNG_COMPRESS_LEVEL = 3
_JPEG_QUALITY = 85
_WEBP_QUALITY = 80


class TileNotFound(ValueError):
    """The tile address does not exist on the grid (zoom out of range, or x/y beyond 2**z - 1)."""


# --------------------------------------------------------------------------------------------------------------
# Grid and bounds (no file access: everything from the metadata ingest stored)


def check_tile_address(z: int, x: int, y: int) -> None:
    """Raise TileNotFound unless (z, x, y) is a tile of the WebMercatorQuad grid."""
    if not MIN_ZOOM <= z <= MAX_ZOOM:
        raise TileNotFound(f"zoom {z} is outside {MIN_ZOOM}..{MAX_ZOOM}")
    side = 1 << z
    if not (0 <= x < side and 0 <= y < side):
        raise TileNotFound(f"tile {x}/{y} does not exist at zoom {z} (0..{side - 1})")


def tile_mercator_bounds(z: int, x: int, y: int) -> tuple[float, float, float, float]:
    """(minx, miny, maxx, maxy) of a tile in EPSG:3857 metres."""
    b = WEB_MERCATOR.xy_bounds(morecantile.Tile(x=x, y=y, z=z))
    return (b.left, b.bottom, b.right, b.top)


@functools.lru_cache(maxsize=4096)
def mercator_bounds(crs: str, bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    """The image's bounds (``bounds`` in ``crs``) as an EPSG:3857 envelope, densified so it contains the image.

    Latitudes are clamped to the grid's ±85.05°, where Web Mercator ends.
    """
    src = CRS.from_user_input(crs)
    west, south, east, north = transform_bounds(src, _LONLAT_CRS, *bounds, densify_pts=21)
    limit = 85.0511287798066
    south, north = max(south, -limit), min(north, limit)
    return tuple(transform_bounds(_LONLAT_CRS, _MERCATOR_CRS, west, south, east, north))  # type: ignore[return-value]


def geographic_bounds(crs: str, bounds: Sequence[float]) -> tuple[float, float, float, float]:
    """(west, south, east, north) in degrees of the image's bounds (``bounds`` in ``crs``)."""
    return tuple(transform_bounds(CRS.from_user_input(crs), _LONLAT_CRS, *bounds, densify_pts=21))  # type: ignore[return-value]


def tile_intersects(z: int, x: int, y: int, bounds_3857: Sequence[float]) -> bool:
    """Whether the tile overlaps the EPSG:3857 envelope ``bounds_3857`` (touching edges do not count)."""
    left, bottom, right, top = tile_mercator_bounds(z, x, y)
    return left < bounds_3857[2] and right > bounds_3857[0] and bottom < bounds_3857[3] and top > bounds_3857[1]


def zoom_range(crs: str, bounds: Sequence[float], width: int, height: int) -> tuple[int, int]:
    """(minzoom, maxzoom) of an image as rio-tiler/TiTiler compute them with morecantile.

    maxzoom is the zoom whose resolution is closest to the image's own once reprojected to EPSG:3857;
    minzoom is the zoom of the smallest overview a COG of that size would have (one tile or less wide).
    """
    affine, w, h = calculate_default_transform(CRS.from_user_input(crs), _MERCATOR_CRS, width, height, *bounds)
    resolution = max(abs(affine.a), abs(affine.e))
    maxzoom = WEB_MERCATOR.zoom_for_res(resolution)
    levels = 0
    while max(w, h) / (2**levels) > _GRID_SIZE:
        levels += 1
    minzoom = min(WEB_MERCATOR.zoom_for_res(resolution * 2**levels), maxzoom)
    return minzoom, maxzoom


# --------------------------------------------------------------------------------------------------------------
# Readers, cached per thread


_local = threading.local()


def _cached_reader(path: str, version: str) -> Reader:
    """An open Reader for ``path`` at ``version`` (must be called inside the rasterio.Env of the read)."""
    cache: OrderedDict[str, tuple[str, Reader]] | None = getattr(_local, "readers", None)
    if cache is None:
        cache = _local.readers = OrderedDict()
    entry = cache.get(path)
    if entry is not None:
        if entry[0] == version:
            cache.move_to_end(path)
            return entry[1]
        # A new COG was written under the same path: the old header must not be reused.
        del cache[path]
        entry[1].close()
    reader = Reader(path)
    cache[path] = (version, reader)
    while len(cache) > READER_CACHE_SIZE:
        _path, (_version, old) = cache.popitem(last=False)
        old.close()
    return reader


def close_readers() -> None:
    """Close this thread's cached readers (tests, or a worker about to fork)."""
    cache = getattr(_local, "readers", None)
    while cache:
        _path, (_version, reader) = cache.popitem()
        reader.close()


# --------------------------------------------------------------------------------------------------------------
# Rendering


def render_tile(
    path: str,
    z: int,
    x: int,
    y: int,
    *,
    tilesize: int = 256,
    fmt: TileFormat = "png",
    bands: Sequence[int] = (1, 2, 3),
    rescale: Sequence[Sequence[float]] | None = None,
    nodata: float | None = None,
    env: Mapping[str, str | int] | None = None,
    version: str = "",
    mercator_bounds: Sequence[float] | None = None,
    buffer: int = 0,
) -> bytes | None:
    """Encode the XYZ tile (z, x, y) of the COG at ``path``, or return None if there is nothing to draw.

    ``path`` is what GDAL opens (a file path or ``/vsigs/...``), ``env`` the GDAL options it needs (the blob
    store's ``gdal_env()``), ``version`` identifies the file's content for the reader cache. ``bands`` are
    1-based band indexes (1 or 3 of them); ``rescale`` is one (min, max) per band, or one for all, mapped
    linearly to 0..255; None leaves 8-bit data as is. ``nodata`` overrides the COG's own nodata value.
    ``mercator_bounds`` (EPSG:3857 envelope of the image, see ``mercator_bounds()``) lets tiles outside the
    image return None without opening the file. PNG and WebP are transparent where there is no data.
    ``buffer`` (see TILE_BUFFERS) adds that many pixels of the neighbouring tiles on each side: the picture is
    ``tilesize + 2 * buffer`` pixels wide.
    """
    check_tile_address(z, x, y)
    if tilesize not in TILE_SIZES:
        raise ValueError(f"tilesize must be one of {TILE_SIZES}, got {tilesize}")
    if buffer not in TILE_BUFFERS:
        raise ValueError(f"buffer must be one of {TILE_BUFFERS}, got {buffer}")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {sorted(FORMATS)}, got {fmt!r}")
    if mercator_bounds is not None and not tile_intersects(z, x, y, mercator_bounds):
        return None
    options = {"nodata": nodata} if nodata is not None else {}
    with rasterio.Env(**{**TILE_GDAL_ENV, **(env or {})}):
        reader = _cached_reader(path, version)
        try:
            image = reader.tile(x, y, z, tilesize=tilesize, indexes=tuple(bands), buffer=buffer or None, **options)
        except TileOutsideBounds:
            return None
    return encode(image, fmt, rescale)


def encode(image: ImageData, fmt: TileFormat, rescale: Sequence[Sequence[float]] | None = None) -> bytes | None:
    """Rescale to 8 bits and encode; None when the tile holds no valid pixel at all."""
    mask = image.mask  # uint8, 255 where valid
    if not mask.any():
        return None
    data = image.array.data
    if rescale and not (data.dtype == np.uint8 and all(tuple(r) == (0, 255) for r in rescale)):
        data = _rescale(image.array, rescale)
    elif data.dtype != np.uint8:
        data = np.clip(data, 0, 255).astype(np.uint8)
    pixels = np.moveaxis(data, 0, -1)  # (bands, rows, cols) -> (rows, cols, bands)
    if pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    opaque = bool(mask.all())
    out = io.BytesIO()
    if fmt == "jpeg":
        PILImage.fromarray(np.ascontiguousarray(pixels)).save(out, "JPEG", quality=_JPEG_QUALITY)
        return out.getvalue()
    if opaque:
        picture = PILImage.fromarray(np.ascontiguousarray(pixels))
    else:
        # (rows, cols, 4) becomes RGBA and (rows, cols, 2) grey + alpha.
        channels = pixels if pixels.ndim == 3 else pixels[:, :, None]
        picture = PILImage.fromarray(np.ascontiguousarray(np.dstack([channels, mask])))
    if fmt == "png":
        picture.save(out, "PNG", compress_level=_PNG_COMPRESS_LEVEL)
    else:
        picture.save(out, "WEBP", quality=_WEBP_QUALITY, method=0)
    return out.getvalue()


def _rescale(array: np.ma.MaskedArray, rescale: Sequence[Sequence[float]]) -> np.ndarray:
    count = array.shape[0]
    ranges = list(rescale) if len(rescale) == count else [rescale[0]] * count
    low = np.array([r[0] for r in ranges], dtype=np.float32)[:, None, None]
    high = np.array([r[1] for r in ranges], dtype=np.float32)[:, None, None]
    scaled = (array.data.astype(np.float32) - low) * (255.0 / np.maximum(high - low, 1e-12))
    return np.clip(scaled, 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def empty_tile(tilesize: int, fmt: TileFormat) -> bytes | None:
    """A fully transparent tile, built once per process; None for JPEG, which cannot be transparent."""
    if fmt == "jpeg":
        return None
    out = io.BytesIO()
    if fmt == "png":
        PILImage.new("LA", (tilesize, tilesize), (0, 0)).save(out, "PNG", optimize=True)
    else:
        PILImage.new("RGBA", (tilesize, tilesize), (0, 0, 0, 0)).save(out, "WEBP", lossless=True)
    return out.getvalue()
