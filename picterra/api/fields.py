"""GeoJSON polygons in and out of the API, validated so that bad geometry never reaches the database."""

from __future__ import annotations

import json

from django.contrib.gis.geos import GEOSException, GEOSGeometry, Polygon
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

MAX_VERTICES = 100_000

POLYGON_SCHEMA = {
    "type": "object",
    "description": "GeoJSON Polygon in longitude/latitude (EPSG:4326).",
    "properties": {
        "type": {"type": "string", "enum": ["Polygon"]},
        "coordinates": {
            "type": "array",
            "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}, "minItems": 2}},
        },
    },
    "required": ["type", "coordinates"],
}


def parse_polygon(value) -> Polygon:
    """Turn a GeoJSON Polygon (dict or string) into a valid EPSG:4326 Polygon, or say precisely why not."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError) as exc:
            raise serializers.ValidationError("Geometry is not valid JSON.") from exc
    if not isinstance(value, dict) or value.get("type") != "Polygon" or not isinstance(value.get("coordinates"), list):
        raise serializers.ValidationError("Geometry must be a GeoJSON object with type 'Polygon' and coordinates.")
    rings = value["coordinates"]
    if not rings or not all(isinstance(ring, list) for ring in rings):
        raise serializers.ValidationError("A polygon needs at least one ring of coordinates.")
    vertices = 0
    for ring in rings:
        if len(ring) < 4:
            raise serializers.ValidationError("Each polygon ring needs at least 4 positions (closed, 3 distinct).")
        for position in ring:
            if (
                not isinstance(position, list | tuple)
                or len(position) < 2
                or not all(isinstance(c, int | float) and not isinstance(c, bool) for c in position[:2])
            ):
                raise serializers.ValidationError("Each position must be [longitude, latitude] numbers.")
            lon, lat = position[0], position[1]
            if not (-180 <= lon <= 180 and -90 <= lat <= 90):
                raise serializers.ValidationError(
                    f"Position [{lon}, {lat}] is outside longitude/latitude range; send EPSG:4326 coordinates."
                )
        vertices += len(ring)
        if ring[0][:2] != ring[-1][:2]:
            raise serializers.ValidationError("Each polygon ring must be closed (first position equals last).")
    if vertices > MAX_VERTICES:
        raise serializers.ValidationError(f"Polygon has {vertices} vertices; the limit is {MAX_VERTICES}.")
    try:
        geometry = GEOSGeometry(json.dumps({"type": "Polygon", "coordinates": [[p[:2] for p in r] for r in rings]}))
    except (GEOSException, ValueError) as exc:
        raise serializers.ValidationError(f"Geometry could not be read: {exc}") from exc
    geometry.srid = 4326
    if not geometry.valid:
        raise serializers.ValidationError(
            f"Polygon is not valid ({geometry.valid_reason}). Redraw it so its edges do not cross."
        )
    if geometry.empty or geometry.area == 0:
        raise serializers.ValidationError("Polygon has no area.")
    return geometry


@extend_schema_field(POLYGON_SCHEMA)
class GeoJSONPolygonField(serializers.Field):
    default_error_messages = {"required": "A GeoJSON Polygon is required."}

    def to_internal_value(self, data) -> Polygon:
        return parse_polygon(data)

    def to_representation(self, value) -> dict:
        return json.loads(value.geojson)
