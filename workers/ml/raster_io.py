"""Window reads from COGs (local paths, URLs, ``/vsigs/...``) and conversions between windows and geometries.

Pixels come back as ``(bands, height, width)`` uint8 RGB: the band order and normalisation the models are
trained with. Geometries are shapely objects in the image CRS unless a function says lon/lat.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import rasterio
import shapely
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.io import DatasetReader
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window, from_bounds
from shapely import affinity
from shapely.geometry import box, mapping, shape
from shapely.geometry.base import BaseGeometry

BAND_ORDER = ("red", "green", "blue")


@dataclass(frozen=True)
class ImagePairSource:
    """Two co-located images of two dates (paths/URLs), the input of a change detector: ``before`` sets the
    grid everything is read on, ``after`` is read onto it (``open_image`` opens both as an ``ImagePair``)."""

    before: str
    after: str

    def __str__(self) -> str:
        return f"{self.before} -> {self.after}"


class ImagePairError(ValueError):
    """Two images that cannot be read as a pair; the message is plain words a user can act on."""


def open_image(source: str | DatasetReader | ImagePairSource | ImagePair) -> DatasetReader | ImagePair:
    """Open a path/URL with rasterio, or an ``ImagePairSource`` as an ``ImagePair``; an already open dataset
    or pair is returned unchanged (the caller closes it)."""
    if isinstance(source, DatasetReader | ImagePair):
        return source
    if isinstance(source, ImagePairSource):
        return open_pair(source.before, source.after)
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


def read_window(src: DatasetReader | ImagePair, window: Window) -> np.ndarray:
    """Read ``window`` as (3, h, w) uint8 RGB; pixels outside the image are 0 (boundless read).

    Single-band images are repeated to RGB and extra bands (NIR, alpha) dropped, so one model fits all.
    An ``ImagePair`` gives (6, h, w): the first date's RGB, then the second date's on the first one's grid.
    """
    if isinstance(src, ImagePair):
        return src.read(window)
    return _read_rgb(src, window, _scale(src))


def _read_rgb(src: DatasetReader | WarpedVRT, window: Window, sc: tuple[float, float] | None) -> np.ndarray:
    """``read_window``'s pixels, stretched with ``sc`` (the image's own stretch, see ``_scale``)."""
    window = Window(int(window.col_off), int(window.row_off), int(window.width), int(window.height))
    idx = [1, 2, 3] if src.count >= 3 else [1, 1, 1]
    inside = window.intersection(Window(0, 0, src.width, src.height)) if _overlaps(window, src) else None
    if sc is None and inside is not None and (inside.width, inside.height) == (window.width, window.height):
        return src.read(indexes=idx, window=window)  # uint8 wholly inside (most cells): no zeros to copy into
    out = np.zeros((3, window.height, window.width), np.float32 if src.dtypes[0] != "uint8" else np.uint8)
    if inside is not None and inside.width > 0 and inside.height > 0:
        data = src.read(indexes=idx, window=inside)
        r0, c0 = int(inside.row_off - window.row_off), int(inside.col_off - window.col_off)
        out[:, r0 : r0 + data.shape[1], c0 : c0 + data.shape[2]] = data
    if sc is not None:
        out = np.clip((out - sc[0]) / (sc[1] - sc[0]) * 255.0, 0, 255).astype(np.uint8)
    return out


def _overlaps(window: Window, src: DatasetReader | WarpedVRT) -> bool:
    return (window.col_off < src.width and window.row_off < src.height
            and window.col_off + window.width > 0 and window.row_off + window.height > 0)


class ImagePair:
    """Two images of two dates read as one raster on the first image's grid (its CRS, transform and size):
    what the ML core reads (``transform``, ``crs``, ``width``, ``height``, ``read_window``) is the first
    image's, and windows come back with six bands, the second date resampled onto the same pixels.

    Each image keeps its own radiometric stretch (``_scale``: non-uint8 imagery, computed on that image), so
    a pair of a 16-bit and an 8-bit capture is read as two comparable uint8 images.
    """

    def __init__(self, before: DatasetReader, after: DatasetReader, owned: bool = False) -> None:
        check_pair(before, after)
        self.before, self.after, self._owned = before, after, owned
        self.transform, self.crs = before.transform, before.crs
        self.width, self.height, self.bounds = before.width, before.height, before.bounds
        self._after_scale = _scale(after)
        self._on_grid: DatasetReader | WarpedVRT = after
        if not (before.crs == after.crs and before.transform == after.transform):
            # any CRS and resolution: warped on the fly, window by window, onto the first image's pixels
            crs = before.crs if before.crs is not None else _NO_CRS
            self._on_grid = WarpedVRT(after, src_crs=after.crs or _NO_CRS, crs=crs, transform=before.transform,
                                      width=before.width, height=before.height, resampling=Resampling.bilinear)

    def read(self, window: Window) -> np.ndarray:
        """(6, h, w) uint8: the first date's RGB then the second date's, both on the first image's grid."""
        return np.concatenate([_read_rgb(self.before, window, _scale(self.before)),
                               _read_rgb(self._on_grid, window, self._after_scale)])

    def close(self) -> None:
        if self._on_grid is not self.after:
            self._on_grid.close()
        if self._owned:
            self.before.close()
            self.after.close()

    def __enter__(self) -> ImagePair:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# images without a CRS: their coordinates are taken as one shared plane (any projected CRS does for warping)
_NO_CRS = "EPSG:3857"


def check_pair(before: DatasetReader, after: DatasetReader) -> None:
    """Refuse, in plain words (``ImagePairError``), two images that cannot be compared: different band counts,
    one with a map position and one without, or no ground in common."""
    if before.count != after.count:
        raise ImagePairError(
            f"The two images have different numbers of bands ({before.count} and {after.count}): a change "
            "detector compares images of the same kind, so both dates need the same bands.")
    if (before.crs is None) != (after.crs is None):
        raise ImagePairError(
            "One of the two images has a position on the map and the other has none, so they cannot be laid "
            "over each other: use two georeferenced images (or two images of the same pixel grid).")
    bounds = after.bounds
    if before.crs is not None and after.crs != before.crs:
        try:
            bounds = transform_bounds(after.crs, before.crs, *bounds)
        except Exception as exc:  # noqa: BLE001 -- a projection error means the images cannot be compared
            raise ImagePairError("The two images' map projections cannot be converted into each other, so "
                                 "they cannot be laid over each other.") from exc
    overlap = box(*before.bounds).intersection(box(*bounds))
    if overlap.is_empty or overlap.area <= 0:
        raise ImagePairError("The two images do not overlap: a change detector compares two images of the same "
                             "place, and the second one covers none of the first one's ground.")


def open_pair(before: str, after: str) -> ImagePair:
    """Open two images (paths/URLs) as an ``ImagePair``; ``ImagePairError`` when they cannot be compared."""
    first = rasterio.open(before)
    try:
        second = rasterio.open(after)
    except Exception:
        first.close()
        raise
    try:
        return ImagePair(first, second, owned=True)
    except Exception:
        first.close()
        second.close()
        raise


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
