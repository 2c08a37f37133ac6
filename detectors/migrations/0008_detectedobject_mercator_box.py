"""Each detected object's box in Web Mercator, kept by PostgreSQL itself (generated columns): the vector tiles
decide polygon or cluster and place clusters from three floats instead of parsing and projecting every geometry
(detectors/vector_tiles.py). PostgreSQL only: the embedded SpatiaLite draws its tiles in Python."""

import math

from django.db import migrations

WORLD = 20037508.342789244  # half the Web Mercator world's width, in metres


def _y(lat: str) -> str:
    return f"(ln(tan(pi() / 4 + radians({lat}) / 2)) * {WORLD / math.pi!r})"


def _x(lon: str) -> str:
    return f"({lon} * {WORLD / 180!r})"


X0, X1 = _x("ST_XMin(geometry)"), _x("ST_XMax(geometry)")
Y0, Y1 = _y("ST_YMin(geometry)"), _y("ST_YMax(geometry)")
COLUMNS = {
    "mercator_x": f"({X0} + {X1}) / 2",
    "mercator_y": f"({Y0} + {Y1}) / 2",
    "mercator_side": f"GREATEST({X1} - {X0}, {Y1} - {Y0})",
}


def add(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("detectors", "DetectedObject")._meta.db_table)
    columns = ", ".join(
        f"ADD COLUMN {name} double precision GENERATED ALWAYS AS ({expression}) STORED"
        for name, expression in COLUMNS.items()
    )
    schema_editor.execute(f"ALTER TABLE {table} {columns}")


def remove(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("detectors", "DetectedObject")._meta.db_table)
    schema_editor.execute(f"ALTER TABLE {table} " + ", ".join(f"DROP COLUMN {name}" for name in COLUMNS))


class Migration(migrations.Migration):
    dependencies = [
        ("detectors", "0007_run_attempts_and_queued_at"),
    ]

    operations = [migrations.RunPython(add, remove)]
