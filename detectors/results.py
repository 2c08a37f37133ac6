"""Detected objects as rows and as GeoJSON: what is stored, what the map shows and what users download."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from operator import itemgetter
from typing import NamedTuple
from uuid import UUID

import numpy as np
import shapely
from django.contrib.gis.geos import GEOSGeometry
from django.db import connection
from pyproj import CRS, Geod
from shapely import wkb as shapely_wkb
from shapely.geometry.base import BaseGeometry

from detectors.models import DetectedObject
from picterra.jobs import JobFailed
from workers.ml.raster_io import image_crs_to_lonlat_many

GEOD = Geod(ellps="WGS84")


def stored_geometries(
    geometries: Sequence[BaseGeometry], crs, lonlat: Sequence[BaseGeometry] | None = None
) -> list[tuple[str, float]]:
    """Image-CRS polygons as rows want them: lon/lat geometry as hex EWKB (SRID 4326) and area in square metres.

    Done for all of a window's objects at once (one reprojection pass, one WKB pass, planar areas in a metric
    CRS): at thousands of objects per cell this was a large share of a cell's time. Hex EWKB, not GEOS objects:
    a ``NewObject`` holds it as it is, ``insert_objects`` sends it as it is, and building a Django GEOS
    object per row (five ctypes calls each) cost more than the reprojection (docs/experiments.md, "Second
    speed-up"). ``lonlat``: the same geometries already in lon/lat (``lonlat_geometries``) when the caller keeps
    them.
    """
    lonlat = lonlat_geometries(geometries, crs) if lonlat is None else np.asarray(lonlat, dtype=object)
    metric = None
    if crs is not None:
        parsed = CRS.from_user_input(crs)
        if parsed.is_projected and parsed.axis_info[0].unit_name in ("metre", "meter"):
            metric = parsed.axis_info[0].unit_conversion_factor
    if metric:
        originals = np.empty(len(geometries), object)
        originals[:] = list(geometries)
        areas = (shapely.area(originals) * metric**2).tolist()
    else:
        areas = [abs(GEOD.geometry_area_perimeter(g)[0]) for g in lonlat]
    # GEOS' own hex writer took 4x the binary one plus Python's bytes.hex (the same uppercase hex as Django's)
    ewkb = shapely.to_wkb(shapely.set_srid(lonlat, 4326), include_srid=True)
    return [(wkb.hex().upper(), area) for wkb, area in zip(ewkb.tolist(), areas, strict=True)]


def lonlat_geometries(geometries: Sequence[BaseGeometry], crs) -> np.ndarray:
    """Image-CRS geometries in lon/lat, as an object array (one reprojection pass over all their coordinates)."""
    lonlat = np.empty(len(geometries), object)
    lonlat[:] = image_crs_to_lonlat_many(list(geometries), crs)
    return lonlat


class NewObject(NamedTuple):
    """An object to store, as ``insert_objects`` writes it: a plain tuple, not a ``DetectedObject``. Building a
    Django model instance per object cost ~20 µs, a tenth of a dense detection cell's CPU time (4,000 objects),
    for values that go straight into COPY. ``geometry`` is lon/lat hex EWKB (``stored_geometries``); exactly one
    of the two runs is set; ``near_border``: see ``DetectedObject.near_border``."""

    training_run_id: UUID | str | None
    detection_run_id: UUID | str | None
    image_id: UUID | str
    detector_class_id: UUID | str
    cell: str
    geometry: str
    score: float
    area_m2: float
    near_border: bool = False


class ObjectOwnerGone(JobFailed):
    """Objects name a run, image or class that no longer exists (deleted while they were being found): the job
    that found them fails with this message, since no retry brings the owner back."""


#: What an object names, as (field, model): the rows ``insert_objects`` locks and checks.
OBJECT_OWNERS = tuple(
    (field.attname, field.related_model)
    for field in map(DetectedObject._meta.get_field, ("training_run", "detection_run", "image", "detector_class"))
)


def insert_objects(rows: Sequence[NewObject]) -> None:
    """Insert new objects in one pass, inside the caller's transaction.

    On PostgreSQL by COPY: building INSERT statements in the ORM cost about twice the database's own time
    for the thousands of objects of a detection cell (bench_ceiling's profile), the largest share of a
    cell after the network. Geometries travel as hex EWKB, which PostGIS parses as geometry input. Other
    databases (SpatiaLite) take ``bulk_create``. The rows' primary keys are not read back.

    The objects' keys have no database constraints (``DetectedObject``): their owners are locked and checked
    here first (``lock_object_owners``); raises ``ObjectOwnerGone`` and inserts nothing when one is gone.
    """
    if not rows:
        return
    if not connection.in_atomic_block:
        raise RuntimeError("insert_objects must run in a transaction: the owners' locks last until it commits")
    lock_object_owners(rows)
    if connection.vendor != "postgresql":
        DetectedObject.objects.bulk_create([DetectedObject(**row._asdict()) for row in rows], batch_size=1000)
        return
    meta, quote = DetectedObject._meta, connection.ops.quote_name
    columns = ", ".join(quote(meta.get_field(name.removesuffix("_id")).column) for name in NewObject._fields)
    with (
        connection.cursor() as cursor,
        cursor.cursor.copy(f"COPY {quote(meta.db_table)} ({columns}) FROM STDIN") as copy,
    ):
        for row in rows:
            copy.write_row(row)


def lock_object_owners(rows: Sequence[NewObject]) -> None:
    """Lock the runs, images and classes the rows name until the transaction ends, or raise ``ObjectOwnerGone``.

    ``FOR KEY SHARE`` is the lock a foreign-key check takes, once per owner instead of once per row: it lets the
    owner's row be updated but makes its deletion wait for this transaction, and the deletion's trigger then
    deletes what this transaction wrote (migration 0013). An owner deleted first, even by a transaction that
    commits while this one waits for its lock, is not returned, and nothing is inserted. SpatiaLite has one
    writer at a time and no row locks: the owners are only checked.
    """
    lock = " FOR KEY SHARE" if connection.vendor == "postgresql" else ""
    for attname, model in OBJECT_OWNERS:
        position, to_python = NewObject._fields.index(attname), model._meta.pk.to_python
        # distinct values first: parsing each of a cell's 4,000 ids cost ~20 ms, for one run, image and class
        wanted = {to_python(value) for value in set(map(itemgetter(position), rows)) if value is not None}
        if not wanted:
            continue
        sql, params = model._default_manager.filter(pk__in=wanted).values_list("pk").query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute(sql + lock, params)
            found = len(cursor.fetchall())
        if found < len(wanted):
            raise ObjectOwnerGone(
                f"The {model._meta.verbose_name} these objects belong to was deleted while they were being saved."
            )


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
