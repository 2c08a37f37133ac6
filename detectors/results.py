"""Detected objects as GeoJSON: what the map shows and what users download."""

from __future__ import annotations

import json
from collections.abc import Iterable

from detectors.models import DetectedObject


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
