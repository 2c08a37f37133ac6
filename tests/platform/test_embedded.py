"""The embedded default (SpatiaLite, local blob folder) keeps working: migrate, seed, ingest, use the API."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

SMOKE = """
import json
from django.test import Client
from detectors.models import Area
from imagery.ingest import ingest_image
from imagery.models import Image

image = Image.objects.get()
status = ingest_image(str(image.pk))
image.refresh_from_db()
c = Client(HTTP_HOST="localhost")
assert c.login(username="demo", password="demo-password")
detector = c.get("/api/v1/detectors/").json()["results"][0]
x, y = image.footprint.centroid.coords
d = 0.0005
area = c.post("/api/v1/areas/", {"detector": detector["id"], "image": str(image.pk), "kind": "training",
    "geometry": {"type": "Polygon", "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]]}},
    content_type="application/json")
print(json.dumps({
    "projects": [p["name"] for p in c.get("/api/v1/projects/").json()["results"]],
    "classes": [k["name"] for k in detector["classes"]],
    "status": status, "size": [image.width, image.height],
    "area": area.status_code,
    "hits": Area.objects.filter(geometry__contains=f"SRID=4326;POINT({x + d / 2} {y + d / 2})").count(),
    "admin": c.get("/admin/organizations/project/").status_code, "home": c.get("/").status_code,
}))
"""


@pytest.mark.spatialite
def test_spatialite_default_migrates_seeds_ingests_and_serves_the_api(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BLOBSTORE_URL", "CELERY_BROKER_URL")}
    env["VAR_DIR"] = str(tmp_path / "var")
    env["PYTHONFAULTHANDLER"] = "1"  # a crash in a native library prints the Python stack it happened under

    def manage(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
        )
        assert result.returncode == 0, result.stderr
        return result.stdout

    manage("migrate", "--noinput", "-v", "0")
    manage("collectstatic", "--noinput", "-v", "0")
    # No broker runs here: seeding must still succeed, leaving the image queued for the sweeper.
    assert "username 'demo', password 'demo-password'" in manage("seed_demo")
    manage("seed_demo")  # idempotent
    result = json.loads(manage("shell", "-c", SMOKE).strip().splitlines()[-1])
    assert result["projects"] == ["Demo project"]
    assert result["classes"] == ["tree"]
    assert result["status"] == "ready" and result["size"] == [2048, 2048]
    assert result["area"] == 201 and result["hits"] == 1
    assert result["admin"] == 200 and result["home"] == 200
    assert (tmp_path / "var" / "picterra.sqlite3").exists()
    assert (tmp_path / "var" / "blobs").is_dir()


LEAK_CHECK = """
import ctypes
import django
django.setup()
from django.db import connection
from rasterio.crs import CRS
import shapely
with connection.cursor() as cursor:
    cursor.execute("SELECT spatialite_version()")
    print(cursor.fetchone()[0])
print(CRS.from_epsg(3857).to_epsg(), shapely.buffer(shapely.Point(0, 0), 1).area > 3)
scope = ctypes.CDLL(None)  # the process's global symbol scope
print(",".join(name for name in ("spatialite_init_ex", "GEOSversion", "proj_context_create") if hasattr(scope, name)))
"""


@pytest.mark.spatialite
def test_spatialite_keeps_its_system_libraries_out_of_the_global_symbol_scope(tmp_path):
    """SQLite's load_extension dlopens RTLD_GLOBAL: the wheels' GEOS/PROJ then bound to the system ones (SIGSEGV)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "BLOBSTORE_URL", "CELERY_BROKER_URL")}
    env.update(VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="picterra.settings")
    result = subprocess.run(
        [sys.executable, "-c", LEAK_CHECK], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    version, crs_and_area, leaked = result.stdout.splitlines()[-3:]
    assert version.startswith("5.")
    assert crs_and_area == "3857 True"
    assert leaked == ""
