"""Fixtures for the public API: the official `picterra` client in its own virtualenv, a live server, keys.

The client's import name clashes with our `picterra/` package, so it never enters the project's venv: a
session fixture creates a virtualenv outside the repository (reused while it still imports), installs
`picterra==4.0.0` from the package index, and tests run client scripts in it as subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.gis.geos import GEOSGeometry

from imagery.storage import get_blob_store
from picterra.organizations.models import ApiKey

CLIENT_VERSION = "4.0.0"
# The client's wheel imports typing_extensions without declaring it (spec section 1).
CLIENT_REQUIREMENTS = [f"picterra=={CLIENT_VERSION}", "typing_extensions==4.16.0"]
SCRIPTS = Path(__file__).resolve().parent / "client_scripts"


def _client_venv_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "picterra-platform-tests" / f"picterra-client-{CLIENT_VERSION}"


@pytest.fixture(scope="session")
def official_client_python(tmp_path_factory) -> Path:
    """The python of a virtualenv holding only the official client; creating it must not fail silently."""
    venv = _client_venv_dir()
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import picterra, sys; print(picterra.__file__)"]
    if (
        python.exists()
        and subprocess.run(check, capture_output=True, cwd=tmp_path_factory.getbasetemp()).returncode == 0
    ):
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    steps = [
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CLIENT_REQUIREMENTS],
    ]
    for step in steps:
        result = subprocess.run(step, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            pytest.fail(f"Could not set up the official client ({' '.join(step)}):\n{result.stdout}\n{result.stderr}")
    result = subprocess.run(check, capture_output=True, text=True, cwd=tmp_path_factory.getbasetemp())
    if result.returncode != 0:
        pytest.fail(f"The official client does not import in its virtualenv:\n{result.stderr}")
    return python


@dataclass
class ClientRunner:
    python: Path
    base_url: str
    workdir: Path

    def run(self, script: str, api_key: str, *args: str, timeout: float = 500) -> dict:
        """Run a client script; it prints one JSON object on its last line."""
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("PICTERRA_", "PYTHON", "DJANGO_", "VIRTUAL_ENV"))
        }
        env.update(PICTERRA_BASE_URL=self.base_url + "/", PICTERRA_API_KEY=api_key)
        result = subprocess.run(
            [str(self.python), str(SCRIPTS / script), *args],
            cwd=self.workdir,  # outside the repository: `import picterra` must find the client
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, f"{script} failed:\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def public_server(live_server, settings):
    """The live server, with the signed blob URLs it hands out pointing at itself."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.TILE_BASE_URL = live_server.url
    settings.PUBLIC_API_POLL_INTERVAL_S = 0.5
    get_blob_store.cache_clear()
    yield live_server
    get_blob_store.cache_clear()


@pytest.fixture
def official_client(official_client_python, public_server, tmp_path) -> ClientRunner:
    workdir = tmp_path / "client"
    workdir.mkdir()
    return ClientRunner(official_client_python, public_server.url, workdir)


@pytest.fixture
def owner_key(personas) -> str:
    return ApiKey.issue(personas.owner, personas.organization, "tests")[1]


@pytest.fixture
def outsider_key(personas) -> str:
    return ApiKey.issue(personas.outsider, personas.outsider_organization, "tests")[1]


def feature_collection(polygons) -> dict:
    """Shapely polygons in lon/lat as a GeoJSON FeatureCollection."""
    from shapely.geometry import mapping

    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": mapping(p)} for p in polygons],
    }


def lonlat(geometry, crs):
    from workers.ml.raster_io import image_crs_to_lonlat

    return image_crs_to_lonlat(geometry, crs)


def geos(polygon) -> GEOSGeometry:
    return GEOSGeometry(polygon.wkt, srid=4326)
