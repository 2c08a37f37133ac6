"""Fixtures of the hostile-input suite: one live server (pytest-django's), one real Celery worker and one world
for the whole module: organizations A (the attacker's) and B (the victim's, with a ready image and its COG, a
detector, a training run, a detection run with exports, public-API rows and an API key).

Every request goes over real HTTP to 127.0.0.1 with `requests`: what the suite sees is what a client on the
network sees. B's rows are made directly through the project's own functions (ingest, exports) instead of a
training run, which would be slow.

The world is built once per module and committed (pytest-django's documented `django_db_blocker` pattern), and
the tests run with the plain `django_db` mark: a flush after each of ~200 tests would cost minutes. So the tests
write only through the server; each one starts by checking that B is still intact (an earlier hole that
damaged B fails loudly instead of letting later checks pass on nothing), and the module ends with a flush.
"""

from __future__ import annotations

import http.server
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.gis.geos import GEOSGeometry
from django.core.management import call_command
from django.test import Client, override_settings
from pytest_django.live_server_helper import LiveServer

from detectors.models import (
    Annotation,
    Area,
    DetectedObject,
    DetectionCell,
    DetectionRun,
    Detector,
    DetectorClass,
    DetectorImage,
    TrainingRun,
)
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store, image_original_key
from picterra.organizations.models import ApiKey, Membership, Organization, Project
from picterra.public_api.models import Marker, Operation, RasterDetails, RasterDetectionArea, VectorLayer
from tests.conftest import CeleryWorkers
from tests.security.corpus import HOSTILE_CLASS_NAMES
from workers.pipelines import write_detection_exports

# Every name in organization B carries this marker: it must never appear in an answer to A.
SECRET = "B-SECRET"
HEALTH_TIMEOUT_S = 10
# Organization A's image name, a spreadsheet formula: CSV exports must not let it run.
A_IMAGE_NAME = '=HYPERLINK("http://attacker.example/"; "open")'

# Things an answer must never show: server paths, library names, stack traces, other files' contents.
LEAK_PATTERNS = [
    re.compile(p, re.IGNORECASE)
    for p in (
        r"traceback",
        r"\bgdal",
        r"rasterio",
        r"libtiff|TIFFRead|TIFFFetch",
        r"CPLE_",
        r"site-packages",
        r"File \"/",
        r"not recognized as (being in )?a supported file format",
        r"/tmp/",
        r"/work/",
        r"/var/lib/",
        r"\bvar/",
        r"root:x:0:0",
        r"psycopg|django\.db|IntegrityError|DataError|ProgrammingError",
        r"RecursionError|MemoryError|KeyError",
    )
]


def leaks(text: str, sent: tuple[str, ...] = ()) -> list[str]:
    """The leak patterns found in ``text`` once what the client itself sent is removed from it."""
    for echo in sorted(sent, key=len, reverse=True):
        if echo:
            text = text.replace(echo, "")
    found = [p.pattern for p in LEAK_PATTERNS if p.search(text)]
    server_paths = {str(django_settings.VAR_DIR), str(django_settings.BASE_DIR), str(django_settings.BLOBSTORE_URL)}
    found += [f"server path {p}" for p in server_paths if p and p in text]
    if django_settings.SECRET_KEY in text:
        found.append("SECRET_KEY")
    return found


def assert_plain_4xx(response: requests.Response, sent: tuple[str, ...] = (), may_name_b: bool = False) -> None:
    """A client error the client can act on: 4xx (never 5xx), short, no server internals; nothing of B unless
    the caller is a member of B (``may_name_b``)."""
    assert 400 <= response.status_code < 500, (
        f"{response.request.method} {response.request.path_url[:200]} answered {response.status_code}: "
        f"{response.text[:300]!r}"
    )
    assert len(response.content) < 20_000, f"{response.status_code} answer of {len(response.content)} bytes"
    found = leaks(response.text, sent)
    assert not found, f"{response.status_code} answer shows {found}: {response.text[:500]!r}"
    if not may_name_b:
        assert SECRET not in response.text, f"answer shows organization B's data: {response.text[:500]!r}"


@dataclass
class Org:
    organization: Organization
    owner: Any
    key: str  # the raw API key of the owner, scoped to this organization
    key_row: ApiKey
    session: str  # a signed-in session cookie of the owner
    project: Project
    image: Image
    detector: Detector
    detector_class: DetectorClass
    detector_image: DetectorImage
    area: Area
    annotation: Annotation
    training_run: TrainingRun
    detection_run: DetectionRun | None = None
    operation: Operation | None = None
    vector_layer: VectorLayer | None = None
    marker: Marker | None = None
    membership: Membership | None = None


@dataclass
class HostileRun:
    detector: Detector
    hostile_class: DetectorClass
    run: DetectionRun
    operation: Operation


@dataclass
class World:
    url: str
    a: Org
    b: Org
    dual_user: Any  # a member of both organizations
    dual_key: str  # ... whose key is scoped to A: it must see nothing of B
    dual_session: str
    hostile: dict[str, HostileRun] = field(default_factory=dict)
    b_baseline: dict[str, Any] = field(default_factory=dict)
    links_before: set[str] = field(default_factory=set)

    def call(
        self, method: str, path: str, key: str | None = None, session: str | None = None, timeout: float = 60, **kw
    ) -> requests.Response:
        headers = dict(kw.pop("headers", {}))
        cookies = {}
        if key is not None:
            headers["X-Api-Key"] = key
        if session is not None:
            cookies[django_settings.SESSION_COOKIE_NAME] = session
            # A CSRF pair of our own making: the attacker in the browser has a valid token of its own.
            cookies[django_settings.CSRF_COOKIE_NAME] = "c" * 32
            headers["X-CSRFToken"] = "c" * 32
        url = path if path.startswith("http") else self.url + path
        # A connection per request, closed with it: a kept-alive one holds a server thread (and its database
        # connection) open, and the test database could not be dropped at the end of the session.
        return requests.request(method, url, headers=headers, cookies=cookies, timeout=timeout, **kw)

    def b_snapshot(self) -> dict[str, Any]:
        """B's rows as they must stay whatever A sends (compared before and after each hostile request)."""
        b = self.b
        return {
            "image": list(Image.objects.filter(pk=b.image.pk).values_list("name", "status", "project_id", "cog_key")),
            "detector": list(Detector.objects.filter(pk=b.detector.pk).values_list("name", "organization_id")),
            "class": list(DetectorClass.objects.filter(pk=b.detector_class.pk).values_list("name", "detector_id")),
            "area": [a.geometry.wkt for a in Area.objects.filter(detector=b.detector)],
            "annotations": Annotation.objects.filter(detector=b.detector).count(),
            "training_runs": list(TrainingRun.objects.filter(detector=b.detector).values_list("pk", "status")),
            "detection_runs": list(DetectionRun.objects.filter(detector=b.detector).values_list("pk", "status")),
            "keys": list(ApiKey.objects.filter(organization=b.organization).values_list("pk", "revoked_at")),
            "members": sorted(
                Membership.objects.filter(organization=b.organization).values_list("user__username", "role")
            ),
            "projects": list(Project.objects.filter(organization=b.organization).values_list("pk", "name")),
            "vector_layers": VectorLayer.objects.filter(image=b.image).count(),
            "markers": Marker.objects.filter(image=b.image).count(),
            "detection_areas": RasterDetectionArea.objects.filter(image=b.image).count(),
        }

    def new_cross_links(self) -> list[str]:
        """Cross-organization rows that appeared during the current test."""
        return sorted(set(self.cross_links()) - self.links_before)

    def cross_links(self) -> list[str]:
        """Rows that tie organization A's objects to B's: none may ever exist."""
        a_org, b_org = self.a.organization, self.b.organization
        found = []
        for model in (Area, Annotation, DetectorImage):
            for org, other in ((a_org, b_org), (b_org, a_org)):
                rows = model.objects.filter(detector__organization=org, image__project__organization=other)
                found += [f"{model.__name__} {r.pk}: detector of {org.name}, image of {other.name}" for r in rows]
        for run in DetectionRun.objects.filter(detector__organization=a_org, images__project__organization=b_org):
            found.append(f"DetectionRun {run.pk}: A's detector on B's image")
        if Membership.objects.filter(organization=b_org, user=self.a.owner).exists():
            found.append("A's owner became a member of B")
        if Project.objects.filter(organization=b_org, created_by=self.a.owner).exists():
            found.append("A's owner created a project in B")
        if ApiKey.objects.filter(organization=b_org, user=self.a.owner).exists():
            found.append("A's owner holds a key of B")
        if DetectorClass.objects.filter(detector__organization=b_org).exclude(pk=self.b.detector_class.pk).exists():
            found.append("a class was added to B's detector")
        return found


# --- server, worker, trap ------------------------------------------------------------------------------------------


class TrapHandler(http.server.BaseHTTPRequestHandler):
    hits: list[str]

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.server.hits.append(self.path)  # type: ignore[attr-defined]
        self.send_response(404)
        self.end_headers()

    do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def http_trap() -> Iterator[http.server.HTTPServer]:
    """A local HTTP server on a free port that records every request: server-side fetches must never reach it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), TrapHandler)
    server.hits = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()


def assert_server_keeps_answering(url: str) -> None:
    """After every hostile item the server still answers its health check and its home page, quickly."""
    started = time.monotonic()
    health = requests.get(url + "/healthz", timeout=HEALTH_TIMEOUT_S)
    home = requests.get(url + "/", timeout=HEALTH_TIMEOUT_S, allow_redirects=False)
    elapsed = time.monotonic() - started
    assert health.status_code == 200 and home.status_code in (200, 302), (health.status_code, home.status_code)
    assert elapsed < HEALTH_TIMEOUT_S, f"the server took {elapsed:.1f} s to answer its health check"


# --- organizations -------------------------------------------------------------------------------------------------


def _b_image(project: Project, user, tmp_dir: Path) -> Image:
    """B's ready image with a real COG, ingested here (in this process) from a generated GeoTIFF."""
    raster = write_sample_geotiff(tmp_dir / "b-orchard.tif", size=256, trees=6, seed=11)
    image = Image(
        project=project,
        created_by=user,
        name=f"{SECRET} orchard",
        original_filename="b-orchard.tif",
        status=Image.Status.UPLOADED,
    )
    image.original_key = image_original_key(image.pk, "b-orchard.tif")
    get_blob_store().put_file(image.original_key, raster.path)
    image.save()
    assert ingest_image(str(image.pk)) == Image.Status.READY
    image.refresh_from_db()
    return image


def _session(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def _square_in(image: Image, fraction: float = 0.25) -> GEOSGeometry:
    minx, miny, maxx, maxy = image.footprint.extent
    w, h = (maxx - minx) * fraction, (maxy - miny) * fraction
    cx, cy = minx + (maxx - minx) / 2, miny + (maxy - miny) / 2
    return GEOSGeometry(f"POLYGON(({cx} {cy}, {cx + w} {cy}, {cx + w} {cy + h}, {cx} {cy + h}, {cx} {cy}))", srid=4326)


def _organization(name: str, username: str, image_factory, with_runs: bool) -> Org:
    users = get_user_model().objects
    owner = users.create_user(username, password=f"pw-{username}-correct-horse")
    organization = Organization.objects.create(name=name)
    membership = Membership.objects.create(organization=organization, user=owner, role=Membership.Role.OWNER)
    key_row, key = ApiKey.issue(owner, organization, name=f"{name} key")
    project = Project.objects.create(organization=organization, name=f"{name} project", created_by=owner)
    image = image_factory(project, owner)
    RasterDetails.objects.create(image=image, identity_key=f"{name} identity", user_tag=f"{name} tag")
    detector = Detector.objects.create(organization=organization, project=project, name=f"{name} detector")
    detector_class = DetectorClass.objects.create(detector=detector, name=f"{name} class")
    detector_image = DetectorImage.objects.create(detector=detector, image=image)
    area = Area.objects.create(detector=detector, image=image, kind=Area.Kind.TRAINING, geometry=_square_in(image))
    annotation = Annotation.objects.create(
        detector=detector, image=image, detector_class=detector_class, geometry=_square_in(image, 0.05)
    )
    review = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "geometry": None, "properties": {"kind": "miss", "class": name}}],
    }
    training_run = TrainingRun.objects.create(
        detector=detector, version=1, status="succeeded", created_by=owner, review=review, metrics={"score": 50}
    )
    Detector.objects.filter(pk=detector.pk).update(active_training_run=training_run)
    DetectedObject.objects.create(
        training_run=training_run, image=image, detector_class=detector_class,
        geometry=_square_in(image, 0.02), score=0.9, area_m2=4.0,
    )  # fmt: skip
    org = Org(
        organization=organization, owner=owner, key=key, key_row=key_row, session=_session(owner), project=project,
        image=image, detector=detector, detector_class=detector_class, detector_image=detector_image, area=area,
        annotation=annotation, training_run=training_run, membership=membership,
    )  # fmt: skip
    if with_runs:
        org.detection_run = finished_detection_run(detector, training_run, image, [detector_class])
        org.vector_layer = VectorLayer.objects.create(
            image=image, name=f"{name} layer", detection_run=org.detection_run, detector_class=detector_class, count=1
        )
        org.operation = Operation.objects.create(
            organization=organization,
            created_by=owner,
            kind=Operation.Kind.DETECTION,
            detection_run=org.detection_run,
            metadata={"detector_id": str(detector.pk), "raster_id": str(image.pk)},
        )
        org.marker = Marker.objects.create(
            image=image, point=GEOSGeometry(_square_in(image).centroid.wkt, srid=4326), text=f"{name} marker"
        )
        RasterDetectionArea.objects.create(image=image, geometry=_square_in(image, 0.5))
    return org


def finished_detection_run(detector: Detector, training_run: TrainingRun, image: Image, classes) -> DetectionRun:
    """A succeeded detection run with one object per class and its exports in the blob store, as
    `finish_detection` leaves it (no model needed)."""
    run = DetectionRun.objects.create(detector=detector, training_run=training_run, status="running")
    run.images.add(image)
    DetectionCell.objects.create(
        run=run, image=image, key="r0c0", window=[0, 0, image.width, image.height],
        pixels=image.width * image.height, margin=16, status="done",
    )  # fmt: skip
    for i, detector_class in enumerate(classes):
        DetectedObject.objects.create(
            detection_run=run, image=image, detector_class=detector_class, cell="r0c0",
            geometry=_square_in(image, 0.02 + 0.01 * i), score=0.9, area_m2=4.0,
        )  # fmt: skip
    keys = write_detection_exports(run)
    DetectionRun.objects.filter(pk=run.pk).update(
        status="succeeded", result_keys=keys, objects_count=len(classes), cells_total=1, cells_done=1
    )
    run.refresh_from_db()
    return run


def _build_world(url: str, tmp_dir: Path) -> World:
    b = _organization(f"Org {SECRET}", "bob", lambda p, u: _b_image(p, u, tmp_dir), with_runs=True)
    b_fields = {
        f.attname: getattr(b.image, f.attname)
        for f in Image._meta.concrete_fields
        if f.attname not in ("id", "project_id", "created_by_id", "created_at", "updated_at", "name")
    }

    def a_image(project: Project, user) -> Image:
        # A row as ingest leaves it, over the same place as B's image (no pixels are read from it); its name
        # is a spreadsheet formula, for the CSV exports.
        fields = {**b_fields, "cog_key": "images/a-has-no-cog/cog.tif", "cog_version": "a1"}
        fields.update(original_key="", original_filename="")
        return Image.objects.create(project=project, created_by=user, name=A_IMAGE_NAME, **fields)

    a = _organization("Org A", "alice", a_image, with_runs=False)
    dual = get_user_model().objects.create_user("dana", password="pw-dana-correct-horse")
    Membership.objects.create(organization=a.organization, user=dual, role=Membership.Role.MEMBER)
    Membership.objects.create(organization=b.organization, user=dual, role=Membership.Role.MEMBER)
    _, dual_key = ApiKey.issue(dual, a.organization, name="dana's key for A")
    world = World(url=url, a=a, b=b, dual_user=dual, dual_key=dual_key, dual_session=_session(dual))
    for name_id, make_name in HOSTILE_CLASS_NAMES.items():
        world.hostile[name_id] = _hostile_run(a, make_name(b.image.cog_key), name_id)
    world.b_baseline = world.b_snapshot()
    return world


def _hostile_run(a: Org, class_name: str, name_id: str) -> HostileRun:
    """A's detector with a class named like an internal reference, and a finished detection run with it."""
    detector = Detector.objects.create(organization=a.organization, project=a.project, name=f"A {name_id}")
    plain = DetectorClass.objects.create(detector=detector, name="tree", position=0)
    hostile = DetectorClass.objects.create(detector=detector, name=class_name, position=1)
    version = TrainingRun.objects.create(detector=detector, version=1, status="succeeded", created_by=a.owner)
    run = finished_detection_run(detector, version, a.image, [plain, hostile])
    operation = Operation.objects.create(
        organization=a.organization, created_by=a.owner, kind=Operation.Kind.DETECTION, detection_run=run,
        metadata={"detector_id": str(detector.pk), "raster_id": str(a.image.pk)},
    )  # fmt: skip
    return HostileRun(detector=detector, hostile_class=hostile, run=run, operation=operation)


def _close_leftover_connections() -> None:
    """End database sessions the stopped live server's threads left open.

    Django's live server serves each client connection in a daemon thread that keeps its database connection
    until the client hangs up; a client that never does (seen after a POST refused before its body was read)
    leaves a session open, and then the test database cannot be dropped at the end of the run. Only sessions
    on this run's own test database are ended, after the server and the worker have stopped.
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="module")
def module_world(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[World]:
    """The live server, one real worker and the two organizations, for the whole module."""
    with django_db_blocker.unblock():
        # Django's live server answers every path under MEDIA_URL with the file of that name under MEDIA_ROOT
        # before the application sees it; with both empty (this project does not use them) that is every path,
        # from the working directory. A real deployment has no such handler: keep it out of the way.
        harness = override_settings(MEDIA_URL="/test-live-server-media/", MEDIA_ROOT=str(tmp_path_factory.mktemp("m")))
        harness.enable()
        # pytest-django's own live server, started for this module: requesting the `live_server` fixture would
        # make every test transactional (a flush of the whole database after each one).
        live_server = LiveServer("127.0.0.1")
        overrides = override_settings(
            # The URLs the server hands out (signed uploads and downloads, tiles) point at itself.
            PUBLIC_BASE_URL=live_server.url,
            TILE_BASE_URL=live_server.url,
            # Users are made here; a fast hasher keeps that cheap (the sign-in throttle is what is tested).
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            # One key makes every request of the module: the per-key rate is not what this suite tests.
            API_KEY_THROTTLE_RATE="100000/minute",
        )
        overrides.enable()
        get_blob_store.cache_clear()
        workers = CeleryWorkers(tmp_path_factory.mktemp("security-worker"))
        try:
            workers.start()
            world = _build_world(live_server.url, tmp_path_factory.mktemp("security-world"))
        except BaseException:
            workers.stop_all()
            live_server.stop()
            overrides.disable()
            harness.disable()
            raise
    try:
        yield world
    finally:
        with django_db_blocker.unblock():
            workers.stop_all()
            live_server.stop()
            _close_leftover_connections()
            call_command("flush", interactive=False, verbosity=0)  # the next module starts from an empty database
            overrides.disable()
            harness.disable()
            get_blob_store.cache_clear()


@pytest.fixture
def world(module_world: World) -> Iterator[World]:
    """The module's world, checked intact before the test; after it, the server must still answer."""
    assert module_world.b_snapshot() == module_world.b_baseline, (
        "organization B was changed by an earlier test of this module (see the first failure); "
        "this test would prove nothing"
    )
    module_world.links_before = set(module_world.cross_links())
    yield module_world
    assert_server_keeps_answering(module_world.url)
