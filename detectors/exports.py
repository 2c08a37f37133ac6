"""Files users download from a detection run: GeoJSON, GeoPackage and a CSV of counts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyogrio.raw
from django.contrib.gis.db.models.functions import AsGeoJSON, AsWKB
from django.db.models import Count, Sum
from django.utils.text import slugify

from detectors.models import Area, DetectedObject, DetectionRun

# Objects per GeoPackage append (and per database fetch): each append opens the file and updates its spatial index
# in one transaction, so fewer, larger appends cost less (100,000 objects: 0.64 CPU s in appends of 5,000, 0.47 in
# appends of 50,000); 50,000 rows of WKB and fields are ~15 MB.
BATCH = 50_000
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@")
CONTROL_STARTS = ("\t", "\r", "\n")


#: The name each export downloads as ends with this (the part after detector, image, version and date).
DOWNLOAD_SUFFIXES = {"geojson": ".geojson", "gpkg": ".gpkg", "csv": "-counts.csv"}
NAME_PART_CHARS = 40


def _name_part(text: str, fallback: str) -> str:
    """ASCII slug of a user's name (accents folded, anything else dropped), at most NAME_PART_CHARS long."""
    return slugify(text)[:NAME_PART_CHARS].strip("-_") or fallback


def download_filename(run: DetectionRun, fmt: str) -> str:
    """The file name an export downloads as: ``<detector>-<image>-v<version>-<date><suffix>``.

    Every run's files used to save as ``objects.geojson``; named after what they hold, several downloads sit
    side by side. A run over several images says how many. Safe anywhere: ASCII slugs, under 200 characters.
    """
    images = sorted((image.name or Path(image.original_filename).stem) for image in run.images.all())
    image_part = _name_part(images[0], "image") if len(images) == 1 else f"{len(images)}-images"
    when = (run.finished_at or run.created_at).date().isoformat()
    parts = (_name_part(run.detector.name, "detector"), image_part, f"v{run.training_run.version}", when)
    return "-".join(parts) + DOWNLOAD_SUFFIXES.get(fmt, f".{slugify(fmt) or 'bin'}")


def spreadsheet_safe(value: object) -> object:
    """A text cell a spreadsheet shows as text: a leading apostrophe when it could start a formula.

    Class and image names are chosen by users, and whoever opens the CSV must not run their formulas
    (`=HYPERLINK(...)` leaking data, `=cmd|...`). Leading spaces do not protect: spreadsheets skip them.
    Numbers stay numbers, so counts and areas still add up.
    """
    if not isinstance(value, str) or not value:
        return value
    if value.startswith(CONTROL_STARTS) or value.lstrip(" \t\r\n").startswith(FORMULA_STARTS):
        return "'" + value
    return value


def _objects(run: DetectionRun):
    """Rows as the files want them; GeoJSON text and WKB come straight from the database, unparsed."""
    return (
        DetectedObject.objects.filter(detection_run=run)
        .order_by("image_id", "cell", "id")
        .annotate(geojson=AsGeoJSON("geometry", precision=8), wkb=AsWKB("geometry"))
        .values_list("geojson", "wkb", "detector_class__name", "score", "area_m2", "image_id")
    )


def write_exports(run: DetectionRun, folder: Path) -> dict[str, Path]:
    """Write every export of the run into ``folder`` and return format → file.

    Streamed in batches, so a country-scale run never holds all its objects in memory.
    """
    paths = {"geojson": folder / "objects.geojson", "gpkg": folder / "objects.gpkg", "csv": folder / "counts.csv"}
    batch: list[tuple] = []
    written = 0

    def flush_gpkg() -> None:
        nonlocal written
        if not batch:
            return
        pyogrio.raw.write(
            str(paths["gpkg"]),
            geometry=np.array([bytes(row[0]) for row in batch], dtype=object),
            field_data=[
                np.array([row[1] for row in batch]),
                np.array([row[2] for row in batch], dtype="float64"),
                np.array([row[3] for row in batch], dtype="float64"),
                np.array([row[4] for row in batch]),
            ],
            fields=["class_name", "score", "area_m2", "image_id"],
            layer="objects",
            driver="GPKG",
            crs="EPSG:4326",
            geometry_type="Polygon",
            append=written > 0,
        )
        written += len(batch)
        batch.clear()

    # A feature's properties written as ``json.dumps`` of the dict {class_name, score, area_m2, image_id} writes
    # them, byte for byte, with each class name's JSON made once and each image id's text once per image (rows
    # come image by image): per object, the dict, its encoding and the id's ``str`` were a sixth of the exports'
    # CPU time.
    class_json: dict[str, str] = {}
    image_id, image = None, ""
    with paths["geojson"].open("w") as out:
        out.write('{"type": "FeatureCollection", "features": [')
        for i, row in enumerate(_objects(run).iterator(chunk_size=BATCH)):
            geojson, wkb, class_name, score, area_m2, row_image_id = row
            name = class_json.get(class_name) or class_json.setdefault(class_name, json.dumps(class_name))
            if row_image_id != image_id:
                image_id, image = row_image_id, str(row_image_id)
            out.write(
                f'{"," if i else ""}{{"type": "Feature", "geometry": {geojson}, "properties": {{"class_name": {name}, '
                f'"score": {round(score, 4)!r}, "area_m2": {round(area_m2, 3)!r}, "image_id": "{image}"}}}}'
            )
            batch.append((wkb, class_name, score, area_m2, image))
            if len(batch) >= BATCH:
                flush_gpkg()
        out.write("]}")
    flush_gpkg()
    if not written:
        paths.pop("gpkg")
    _write_counts(run, paths["csv"])
    return paths


def detection_counts(run: DetectionRun) -> list[dict]:
    """Counts per image, per detection area (the whole image when it has none) and per class."""
    class_names = list(run.detector.classes.order_by("position", "name").values_list("name", flat=True))
    rows = []
    for image in run.images.order_by("created_at"):
        objects = DetectedObject.objects.filter(detection_run=run, image=image)
        regions = list(Area.objects.filter(detector=run.detector, image=image, kind=Area.Kind.DETECTION))
        scopes = [(f"detection area {a.pk}", objects.filter(geometry__intersects=a.geometry)) for a in regions]
        scopes = scopes or [("whole image", objects)]
        for label, scope in scopes:
            totals = {
                row["detector_class__name"]: row
                for row in scope.values("detector_class__name").annotate(n=Count("id"), area=Sum("area_m2"))
            }
            for name in class_names:
                row = totals.get(name, {"n": 0, "area": 0.0})
                rows.append(
                    {
                        "image_id": str(image.pk),
                        "image_name": image.name,
                        "area": label,
                        "class_name": name,
                        "count": row["n"],
                        "total_area_m2": round(row["area"] or 0.0, 3),
                    }
                )
    return rows


def _write_counts(run: DetectionRun, path: Path) -> None:
    columns = ["image_id", "image_name", "area", "class_name", "count", "total_area_m2"]
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(columns)
        for row in detection_counts(run):
            writer.writerow([spreadsheet_safe(row[c]) for c in columns])
