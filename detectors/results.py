"""Detected objects as rows and as GeoJSON: what is stored, what the map shows and what users download."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

from django.contrib.gis.geos import GEOSGeometry
from pyproj import CRS, Geod
from shapely import wkb as shapely_wkb
from shapely.geometry.base import BaseGeometry

from detectors.models import DetectedObject
from workers.ml.raster_io import image_crs_to_lonlat_many

GEOD = Geod(ellps="WGS84")


def stored_geometries(geometries: Sequence[BaseGeometry], crs) -> list[tuple[GEOSGeometry, float]]:
    """Image-CRS polygons as rows want them: lon/lat GEOS geometry and area in square metres.

    Done for all of a window's objects at once (one reprojection pass, WKB not GeoJSON, planar areas in a
    metric CRS): at thousands of objects per cell this was a large share of a cell's time.
    """
    lonlat = image_crs_to_lonlat_many(list(geometries), crs)
    metric = None
    if crs is not None:
        parsed = CRS.from_user_input(crs)
        if parsed.is_projected and parsed.axis_info[0].unit_name in ("metre", "meter"):
            metric = parsed.axis_info[0].unit_conversion_factor
    rows = []
    for original, g in zip(geometries, lonlat, strict=True):
        area = original.area * metric**2 if metric else abs(GEOD.geometry_area_perimeter(g)[0])
        rows.append((GEOSGeometry(memoryview(g.wkb), srid=4326), area))
    return rows


def lonlat_geometry(geometry: BaseGeometry) -> tuple[GEOSGeometry, float]:
    """A lon/lat shapely polygon as a row wants it, with its geodesic area in square metres."""
    return GEOSGeometry(memoryview(geometry.wkb), srid=4326), abs(GEOD.geometry_area_perimeter(geometry)[0])


def to_shapely(geometry: GEOSGeometry) -> BaseGeometry:
    return shapely_wkb.loads(bytes(geometry.wkb))


def feature_collection(objects: Iterable[DetectedObject]) -> dict:
    """A FeatureCollection of Polygons in lon/lat, one feature per object (never MultiPolygons)."""
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "id": obj.pk,
                "geometry": json.loads(obj.geometry.geojson),
                "properties": {
                    "class_name": obj.detector_class.name,
                    "class_id": str(obj.detector_class_id),
                    "image": str(obj.image_id),
                    "score": round(obj.score, 4),
                    "area_m2": round(obj.area_m2, 3),
                },
            }
            for obj in objects
        ],
    }
