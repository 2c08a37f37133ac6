"""Shared fixtures: personas (owner, member, outsider), API clients, generated rasters, a real worker."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.gis.geos import GEOSGeometry
from rest_framework.test import APIClient

from imagery.models import Image
from imagery.sample import write_sample_geotiff
from picterra.organizations.models import Membership, Organization, Project

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _static_files_without_manifest(settings):
    """In-process tests skip collectstatic; the manifest storage is exercised by the embedded smoke test."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _fresh_throttling_counters():
    """Each test starts with no failed sign-ins or API key counts (a per-process memory cache keeps them)."""
    from django.core.cache import caches
    from django.core.cache.backends.locmem import LocMemCache

    for cache in caches.all(initialized_only=True):
        if isinstance(cache, LocMemCache):
            cache.clear()


@dataclass
class Personas:
    organization: Organization
    owner: object
    member: object
    outsider: object
    outsider_organization: Organization


@pytest.fixture
def personas(db) -> Personas:
    users = get_user_model().objects
    owner = users.create_user("olivia", password="pw-olivia")
    member = users.create_user("mario", password="pw-mario")
    outsider = users.create_user("oscar", password="pw-oscar")
    organization = Organization.objects.create(name="Acme Mapping")
    Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    Membership.objects.create(organization=organization, user=member, role=Membership.Role.MEMBER)
    other = Organization.objects.create(name="Other Org")
    Membership.objects.create(organization=other, user=outsider, role=Membership.Role.OWNER)
    return Personas(organization, owner, member, outsider, other)


@pytest.fixture
def client_for():
    def make(user) -> APIClient:
        client = APIClient()
        if user is not None:
            client.force_login(user)
        return client

    return make


@pytest.fixture
def project(personas) -> Project:
    return Project.objects.create(organization=personas.organization, name="Vineyards", created_by=personas.owner)


# A small square near Lausanne, in lon/lat: the footprint of `ready_image`.
FOOTPRINT_WKT = "POLYGON((6.60 46.50, 6.61 46.50, 6.61 46.51, 6.60 46.51, 6.60 46.50))"


@pytest.fixture
def ready_image(project) -> Image:
    """An image row as ingest leaves it (no pixels needed for API tests)."""
    return Image.objects.create(
        project=project,
        name="ortho.tif",
        status=Image.Status.READY,
        width=1000,
        height=1000,
        band_count=3,
        dtype="uint8",
        crs="EPSG:32632",
        gsd=0.3,
        footprint=GEOSGeometry(FOOTPRINT_WKT, srid=4326),
        display_bands=[1, 2, 3],
        rescale=[[0, 255]] * 3,
        cog_key="images/fixture/cog.tif",
        cog_version="v1",
    )


def square(lon: float, lat: float, size: float = 0.001) -> dict:
    return {
        "type": "Polygon",
        "coordinates": [[[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]],
    }


@pytest.fixture
def sample_geotiff(tmp_path):
    return write_sample_geotiff(tmp_path / "sample.tif", size=256, trees=6)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):
    """Poll a condition on real state until it holds; fail with the last value when the deadline passes."""
    deadline = time.monotonic() + timeout
    value = predicate()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = predicate()
    assert value, f"condition not met within {timeout} s"
    return value


def stop_process(process: subprocess.Popen, timeout: float = 20.0) -> None:
    """Ask a server process started by a test to stop; kill it if it does not within ``timeout``."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _database_url_for_current_test_db() -> str:
    from django.db import connection

    s = connection.settings_dict
    if "spatialite" in s["ENGINE"]:
        return f"spatialite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgis://{auth}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


class CeleryWorkers:
    """Starts real Celery worker processes on the test database and broker; the test can kill them."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen] = []

    def start(self, include: tuple[str, ...] = (), **extra_env: str) -> subprocess.Popen:
        from picterra.celery import app

        hostname = f"test-{os.getpid()}-{time.monotonic_ns()}@localhost"
        # Training runs in tests get a short wall-clock budget (the ML core still runs its minimum of steps, so
        # a busy machine trains no less): they check the plumbing, not the accuracy.
        env = {
            **os.environ,
            "DATABASE_URL": _database_url_for_current_test_db(),
            "TRAINING_TIME_BUDGET_S": os.environ.get("TEST_TRAINING_TIME_BUDGET_S", "10"),
            **extra_env,
        }
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        with log_path.open("w") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "picterra",
                    "worker",
                    "-Q",
                    "default,gpu",
                    "--concurrency",
                    "1",
                    "--loglevel",
                    "INFO",
                    "--hostname",
                    hostname,
                    "--without-mingle",
                    "--without-gossip",
                    *(f"--include={module}" for module in include),
                ],
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, so kill() takes the pool children too
            )
        self.started.append(process)
        process.log_path = log_path
        wait_for(lambda: process.poll() is not None or app.control.ping([hostname], timeout=0.5), timeout=60)
        assert process.poll() is None, log_path.read_text()
        return process

    @staticmethod
    def kill(process: subprocess.Popen) -> None:
        """SIGKILL the worker and its pool children at once: a machine that lost power."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for process in self.started:
            if process.poll() is None:
                stop_process(process)


@pytest.fixture
def celery_workers(transactional_db, tmp_path):
    workers = CeleryWorkers(tmp_path)
    try:
        yield workers
    finally:
        workers.stop_all()


@pytest.fixture
def celery_worker_process(celery_workers):
    """A real Celery worker process on the test database and the test broker, stopped after the test."""
    return celery_workers.start()
