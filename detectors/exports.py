"""Files users download from a detection run: GeoJSON, GeoPackage and a CSV of counts."""

from __future__ import annotations

import csv
import io
import json
import logging
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nanoarrow as na
import nanoarrow.ipc
import numpy as np
import pyogrio.raw
import shapely
from django.contrib.gis.db.models.functions import AsWKB
from django.db.models import Count, QuerySet, Sum
from django.utils.text import slugify
from shapely.geometry.base import BaseGeometry

from detectors.models import Area, DetectedObject, DetectionCell, DetectionRun, DetectorClass, detection_run_prefix
from detectors.results import NewObject
from imagery.blobstore import BlobStore

log = logging.getLogger(__name__)

# Objects per database fetch when a run's objects are read back (cells without an export part): 50,000 rows of WKB
# and fields are ~15 MB.
BATCH = 50_000
# The GeoPackage's columns, as the Arrow batches that stream into it (``write_exports``).
GPKG_SCHEMA = na.struct(
    {
        "geometry": na.binary(),
        "class_name": na.string(),
        "score": na.float64(),
        "area_m2": na.float64(),
        "image_id": na.string(),
    }
)
#: Under a run's prefix: the cells' export parts, kept until the run's exports are written.
PARTS = "parts/"
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@")
CONTROL_STARTS = ("\t", "\r", "\n")
#: Decimal places of the GeoJSON's lon/lat coordinates (1e-8 degree: about a millimetre).
GEOJSON_DECIMALS = 8


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


def _objects(objects: QuerySet[DetectedObject]):
    """Rows as the files want them, image by image and cell by cell: WKB straight from the database, class name,
    score, area, image."""
    return (
        objects.order_by("image_id", "cell", "id")
        .annotate(wkb=AsWKB("geometry"))
        .values_list("wkb", "detector_class__name", "score", "area_m2", "image_id")
    )


def geojson_geometries(wkb: list[bytes]) -> list[str]:
    """GeoJSON text of many lon/lat geometries given as WKB (``geojson_text``).

    In one vectorised pass, however the objects reach the exports (a cell's rows in memory, the database): the same
    text either way, and the database no longer formats it row by row."""
    return geojson_text(shapely.from_wkb(wkb)) if len(wkb) else []


def geojson_text(geometries: np.ndarray) -> list[str]:
    """GeoJSON text of many lon/lat shapely geometries at once, coordinates rounded to GEOJSON_DECIMALS."""
    rounded = shapely.transform(geometries, lambda xy: np.round(xy, GEOJSON_DECIMALS))
    return shapely.to_geojson(rounded).tolist()


@dataclass
class ExportChunk:
    """Objects as every export writes them: their GeoJSON features (text, comma-separated, no brackets) and
    the GeoPackage's columns. A cell's export part is one chunk, stored as it is (``write_cell_part``), with the
    classes (id → name) its names were written from: a class renamed or deleted since makes it stale."""

    features: str
    wkb: list[bytes]
    class_name: list[str]
    score: list[float]
    area_m2: list[float]
    image_id: list[str]
    classes: dict[str, str] = field(default_factory=dict)

    @classmethod
    def empty(cls) -> ExportChunk:
        return cls("", [], [], [], [], [])

    def __len__(self) -> int:
        return len(self.wkb)

    def to_bytes(self) -> bytes:
        """An ``.npz`` of plain arrays (text and WKB as bytes with offsets): read back without pickle."""
        lengths = np.fromiter((len(w) for w in self.wkb), np.int64, len(self.wkb))
        buffer = io.BytesIO()
        np.savez(
            buffer,
            features=np.frombuffer(self.features.encode(), np.uint8),
            wkb=np.frombuffer(b"".join(self.wkb), np.uint8),
            wkb_ends=np.cumsum(lengths),
            class_name=np.array(self.class_name, dtype=str),
            score=np.array(self.score, np.float64),
            area_m2=np.array(self.area_m2, np.float64),
            image_id=np.array(self.image_id, dtype=str),
            class_ids=np.array(list(self.classes), dtype=str),
            class_names=np.array(list(self.classes.values()), dtype=str),
        )
        return buffer.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ExportChunk:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            wkb, ends = npz["wkb"].tobytes(), npz["wkb_ends"].tolist()
            starts = [0, *ends[:-1]] if ends else []
            return cls(
                features=npz["features"].tobytes().decode(),
                wkb=[wkb[a:b] for a, b in zip(starts, ends, strict=True)],
                class_name=npz["class_name"].tolist(),
                score=npz["score"].tolist(),
                area_m2=npz["area_m2"].tolist(),
                image_id=npz["image_id"].tolist(),
                classes=dict(zip(npz["class_ids"].tolist(), npz["class_names"].tolist(), strict=True)),
            )


class _ChunkBuilder:
    """Objects added one by one, taken as an ``ExportChunk`` (features formatted then, geometries in one pass).

    A feature's properties written as ``json.dumps`` of the dict {class_name, score, area_m2, image_id} writes
    them, byte for byte, with each class name's JSON made once and each image id's text once per image (rows
    come image by image): per object, the dict, its encoding and the id's ``str`` were a sixth of the exports'
    CPU time."""

    def __init__(self) -> None:
        self.chunk = ExportChunk.empty()
        self.properties: list[str] = []
        self.class_json: dict[str, str] = {}
        self.image_id: object = None
        self.image = ""

    def add(self, wkb: bytes, class_name: str, score: float, area_m2: float, image_id: object) -> None:
        name = self.class_json.get(class_name) or self.class_json.setdefault(class_name, json.dumps(class_name))
        if image_id != self.image_id:
            self.image_id, self.image = image_id, str(image_id)
        self.properties.append(
            f'"properties": {{"class_name": {name}, "score": {round(score, 4)!r}, '
            f'"area_m2": {round(area_m2, 3)!r}, "image_id": "{self.image}"}}}}'
        )
        chunk = self.chunk
        chunk.wkb.append(wkb)
        chunk.class_name.append(class_name)
        chunk.score.append(score)
        chunk.area_m2.append(area_m2)
        chunk.image_id.append(self.image)

    def __len__(self) -> int:
        return len(self.chunk)

    def take(self, geometries: np.ndarray | None = None) -> ExportChunk:
        """The chunk, its features formatted; ``geometries``: the objects' shapely geometries when at hand (else
        they are read from their WKB)."""
        chunk = self.chunk
        texts = geojson_text(geometries) if geometries is not None else geojson_geometries(chunk.wkb)
        chunk.features = ",".join(
            f'{{"type": "Feature", "geometry": {geometry}, {properties}'
            for geometry, properties in zip(texts, self.properties, strict=True)
        )
        self.chunk, self.properties = ExportChunk.empty(), []
        return chunk


def _chunks(rows, size: int = BATCH) -> Iterator[ExportChunk]:
    """Database rows (``_objects``) as chunks of at most ``size`` objects."""
    builder = _ChunkBuilder()
    for wkb, class_name, score, area_m2, image_id in rows.iterator(chunk_size=BATCH):
        builder.add(bytes(wkb), class_name, score, area_m2, image_id)
        if len(builder) >= size:
            yield builder.take()
    if len(builder):
        yield builder.take()


def cell_part(rows: list[NewObject], class_names: dict[str, str], lonlat: Sequence[BaseGeometry] = ()) -> ExportChunk:
    """A cell's objects away from cell borders as the exports write them, from the rows just stored (lon/lat hex
    EWKB) rather than read back: ``class_names`` maps class id (text) to name. ``lonlat``: the rows' lon/lat
    geometries, one per row, when at hand (the cell's task has them: parsing the hex EWKB back was an eighth to a
    fifth of a part's time); the same part either way."""
    names: dict[object, str] = {}  # by the rows' own ids (UUIDs): their text once per class, not per row
    at = [i for i, row in enumerate(rows) if not row.near_border]
    interior = [rows[i] for i in at]
    if len(lonlat) == len(rows):
        geometries = np.asarray(lonlat, dtype=object)[at]
    else:  # the stored hex EWKB carries the SRID; the files want plain WKB, as the database gives it
        geometries = shapely.from_wkb([bytes.fromhex(row.geometry) for row in interior])
    builder = _ChunkBuilder()
    for row, wkb in zip(interior, shapely.to_wkb(geometries), strict=True):
        class_id = row.detector_class_id
        name = names.get(class_id) or names.setdefault(class_id, class_names[str(class_id)])
        builder.add(wkb, name, row.score, row.area_m2, row.image_id)
    chunk = builder.take(geometries)
    chunk.classes = {str(class_id): name for class_id, name in names.items()}
    return chunk


def _class_names(**detector) -> dict[str, str]:
    """A detector's classes now, id (text) → name; ``detector``: how to find them."""
    return {str(pk): name for pk, name in DetectorClass.objects.filter(**detector).values_list("pk", "name")}


def cell_part_key(cell: DetectionCell) -> str:
    """Where a cell's export part is kept: under the run's prefix (deleted with the run), one key per attempt."""
    return f"{detection_run_prefix(cell.run_id)}{PARTS}{cell.image_id}/{cell.key}-{cell.attempts}.npz"


def write_cell_part(
    cell: DetectionCell, rows: list[NewObject], store: BlobStore, lonlat: Sequence[BaseGeometry] = ()
) -> bool:
    """Store the objects of a done cell that lie away from cell borders (``rows``: the ones just stored for it)
    as the exports will write them, so the run's final step copies them instead of reading and formatting them
    again (in one process, after the last cell: at country scale that tail took longer than the detection). The
    merge never changes these objects. Recorded on the cell only if it is still done and its objects have not
    been replaced meanwhile; returns whether it was. ``lonlat``: see ``cell_part``."""
    class_names = _class_names(detector__detection_runs=cell.run_id)
    key = cell_part_key(cell)
    store.put_stream(key, io.BytesIO(cell_part(rows, class_names, lonlat).to_bytes()))
    if DetectionCell.objects.filter(pk=cell.pk, status=DetectionCell.Status.DONE, export_part="").update(
        export_part=key
    ):
        return True
    store.delete(key)
    return False


def _run_chunks(run: DetectionRun, store: BlobStore | None) -> Iterator[ExportChunk]:
    """Every object of the run once: each done cell's part (or, without a usable one, its objects away from
    borders read from the database, cells in a row in one query), then the objects along cell borders, merged."""
    cells = list(  # a few bytes a cell: the queries below run while going through them
        DetectionCell.objects.filter(run=run)
        .order_by("image__created_at", "image_id", "key")
        .values_list("image_id", "key", "export_part")
    )
    classes = _class_names(detector=run.detector_id)
    image_id, keys = None, []

    def from_database() -> Iterator[ExportChunk]:
        if keys:
            interior = DetectedObject.objects.filter(
                detection_run=run, image_id=image_id, cell__in=list(keys), near_border=False
            )
            yield from _chunks(_objects(interior))
            keys.clear()

    for cell_image, key, part in cells:
        chunk = _read_part(store, part, classes) if part and store is not None else None
        if cell_image != image_id or chunk is not None or len(keys) >= 1000:
            yield from from_database()
            image_id = cell_image
        if chunk is not None:
            yield chunk
        else:
            keys.append(key)
    yield from from_database()
    yield from _chunks(_objects(DetectedObject.objects.filter(detection_run=run, near_border=True)))


def _read_part(store: BlobStore, key: str, classes: dict[str, str]) -> ExportChunk | None:
    """A stored part, or None when it cannot be used (gone, damaged, or written under class names that have
    changed since: ``classes`` is the detector's now, id → name): the database holds the same objects."""
    try:
        with store.open_read(key) as fh:
            chunk = ExportChunk.from_bytes(fh.read())
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        log.warning("export part %s unusable (%s): reading its objects from the database", key, exc)
        return None
    if any(classes.get(class_id) != name for class_id, name in chunk.classes.items()):
        log.info("export part %s names a class renamed or deleted since: reading its objects from the database", key)
        return None
    return chunk


def write_exports(run: DetectionRun, folder: Path, store: BlobStore | None = None) -> dict[str, Path]:
    """Write every export of the run into ``folder`` and return format → file.

    Streamed in chunks, so a country-scale run never holds all its objects in memory; with ``store``, the cells'
    export parts are copied as they are (``write_cell_part``). The GeoPackage is written by GDAL in one session from
    the chunks spooled to an Arrow stream file beside it: a new layer's spatial index is then built in bulk at the
    end, where appends (one session per batch) inserted every object into the existing index one by one, which
    grows worse as the index outgrows memory (400,000 objects: 2.3 CPU s against 5.3-6.5; docs/experiments.md,
    "GeoPackage in one session").
    """
    paths = {"geojson": folder / "objects.geojson", "gpkg": folder / "objects.gpkg", "csv": folder / "counts.csv"}
    spool = folder / "objects.arrows"
    written = 0
    first = True
    with paths["geojson"].open("w") as out, nanoarrow.ipc.StreamWriter.from_path(str(spool)) as batches:
        out.write('{"type": "FeatureCollection", "features": [')
        for chunk in _run_chunks(run, store):
            if not len(chunk):
                continue
            out.write(chunk.features if first else "," + chunk.features)
            first = False
            batches.write_array(_gpkg_batch(chunk))
            written += len(chunk)
        out.write("]}")
    if written:
        with na.ArrayStream.from_path(str(spool)) as stream:
            pyogrio.raw.write_arrow(
                stream,
                str(paths["gpkg"]),
                layer="objects",
                driver="GPKG",
                geometry_name="geometry",
                geometry_type="Polygon",
                crs="EPSG:4326",
            )
    else:
        paths.pop("gpkg")
    spool.unlink(missing_ok=True)
    _write_counts(run, paths["csv"])
    return paths


def _gpkg_batch(chunk: ExportChunk) -> Any:
    """A chunk's GeoPackage columns as one Arrow record batch (``GPKG_SCHEMA``; nanoarrow names no public type)."""
    columns = [
        na.c_array(chunk.wkb, na.binary()),
        na.c_array(chunk.class_name, na.string()),
        na.c_array(chunk.score, na.float64()),
        na.c_array(chunk.area_m2, na.float64()),
        na.c_array(chunk.image_id, na.string()),
    ]
    return na.c_array_from_buffers(GPKG_SCHEMA, len(chunk), [None], children=columns)


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
