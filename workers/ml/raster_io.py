"""Window reads from COGs (local paths, URLs, ``/vsigs/...``) and conversions between windows and geometries.

Pixels come back as ``(bands, height, width)`` uint8 RGB: the band order and normalisation the models are
trained with. Geometries are shapely objects in the image CRS unless a function says lon/lat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.io import DatasetReader
from rasterio.windows import Window, from_bounds
from shapely import affinity
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

BAND_ORDER = ("red", "green", "blue")


def open_image(source: str | DatasetReader) -> DatasetReader:
    """Open a path/URL with rasterio; an already open dataset is returned unchanged (the caller closes it)."""
    if isinstance(source, DatasetReader):
        return source
    return rasterio.open(source)


def _scale(src: DatasetReader) -> tuple[float, float] | None:
    """Non-uint8 imagery is stretched to 0-255 with 2-98 % percentiles of an overview, cached per dataset."""
    if src.dtypes[0] == "uint8":
        return None
    cache = getattr(src, "_picterra_scale", None)
    if cache is None:
        f = max(1, max(src.width, src.height) // 512)
        sample = src.read(indexes=list(range(1, min(3, src.count) + 1)),
                          out_shape=(min(3, src.count), max(1, src.height // f), max(1, src.width // f)))
        lo, hi = np.percentile(sample, [2, 98])
        cache = (float(lo), float(max(hi, lo + 1e-6)))
        try:
            src._picterra_scale = cache  # type: ignore[attr-defined]
        except AttributeError:
            pass
    return cache


def read_window(src: DatasetReader, window: Window) -> np.ndarray:
    """Read ``window`` as (3, h, w) uint8 RGB; pixels outside the image are 0 (boundless read).

    Single-band images are repeated to RGB and extra bands (NIR, alpha) dropped, so one model fits all.
    """
    window = Window(int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    idx = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
    inside = window.intersection(Window(0, 0, src.width, src.height)) if _overlaps(window, src) else None
    out = np.zeros((3, window.height, window.width), np.float32 if src.dtypes[0] != "uint8" else np.uint8)
    if inside is not None and inside.width > 0 and inside.height > 0:
        data = src.read(indexes=idx, window=inside)
        r0, c0 = int(inside.row_off - window.row_off), int(inside.col_off - window.col_off)
        out[:, r0 : r0 + data.shape[1], c0 : c0 + data.shape[2]] = data
    sc = _scale(src)
    if sc is not None:
        out = np.clip((out - sc[0]) / (sc[1] - sc[0]) * 255.0, 0, 255).astype(np.uint8)
    return out


def _overlaps(window: Window, src: DatasetReader) -> bool:
    return (window.col_off < src.width and window.row_off < src.height
            and window.col_off + window.width > 0 and window.row_off + window.height > 0)


def window_transform(transform: Affine, window: Window) -> Affine:
    """Affine of a window's pixel grid (image CRS units)."""
    return transform @ Affine.translation(window.col_off, window.row_off)


def geometry_to_pixels(geom: BaseGeometry, transform: Affine) -> BaseGeometry:
    """Image-CRS geometry -> pixel coordinates (x = column, y = row) of the grid ``transform`` describes."""
    inv = ~transform
    return affinity.affine_transform(geom, [inv.a, inv.b, inv.d, inv.e, inv.c, inv.f])


def pixels_to_geometry(geom: BaseGeometry, transform: Affine) -> BaseGeometry:
    """Pixel-coordinate geometry -> image CRS."""
    t = transform
    return affinity.affine_transform(geom, [t.a, t.b, t.d, t.e, t.c, t.f])


def geometry_window(geom: BaseGeometry, transform: Affine, pad: int = 0) -> Window:
    """Smallest integer window covering ``geom`` (image CRS), grown by ``pad`` pixels on each side."""
    minx, miny, maxx, maxy = geometry_to_pixels(geom, transform).bounds
    c0, r0 = int(np.floor(minx)) - pad, int(np.floor(miny)) - pad
    return Window(c0, r0, int(np.ceil(maxx)) + pad - c0, int(np.ceil(maxy)) + pad - r0)


def window_geometry(window: Window, transform: Affine) -> BaseGeometry:
    """The footprint of a window as a polygon in the image CRS."""
    return pixels_to_geometry(box(window.col_off, window.row_off, window.col_off + window.width,
                                  window.row_off + window.height), transform)


def bounds_window(bounds: tuple[float, float, float, float], transform: Affine) -> Window:
    """Window of image-CRS bounds (left, bottom, right, top), rounded outwards to whole pixels."""
    return from_bounds(*bounds, transform=transform).round_offsets().round_lengths()


def _transformer(src_crs: Any, dst_crs: Any) -> Transformer:
    return Transformer.from_crs(CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs), always_xy=True)


def lonlat_to_image_crs(geom: BaseGeometry | dict[str, Any] | str, crs: Any) -> BaseGeometry:
    """Lon/lat (EPSG:4326) GeoJSON geometry (dict, JSON text or shapely) -> shapely geometry in ``crs``.

    Images without a CRS (``crs is None``) are taken to use pixel-like coordinates already.
    """
    if isinstance(geom, str):
        geom = json.loads(geom)
    if isinstance(geom, dict):
        geom = shape(geom.get("geometry", geom))
    if crs is None:
        return geom
    return _reproject(geom, _transformer("EPSG:4326", crs))


def image_crs_to_lonlat(geom: BaseGeometry, crs: Any) -> BaseGeometry:
    """Image-CRS geometry -> lon/lat (EPSG:4326)."""
    if crs is None:
        return geom
    return _reproject(geom, _transformer(crs, "EPSG:4326"))


def image_crs_to_lonlat_many(geoms: Sequence[BaseGeometry], crs: Any) -> list[BaseGeometry]:
    """Many geometries at once: one pass of the transformer over all their coordinates."""
    if crs is None or not len(geoms):
        return list(geoms)
    return list(_reproject(np.asarray(geoms, dtype=object), _transformer(crs, "EPSG:4326")))


def _reproject(geom: BaseGeometry, tr: Transformer) -> BaseGeometry:
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))


def to_geojson(geom: BaseGeometry) -> dict[str, Any]:
    return mapping(geom)
