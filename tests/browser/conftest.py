"""Browser tests: Debian's Chromium driven by Playwright against pytest-django's live server.

No browser is downloaded: Playwright launches /usr/bin/chromium (installed by `scripts/setup.sh`; installed
here with apt when missing and possible). The web app must be built (`npm run build` in frontend/, also done
by setup). Screenshots of each main screen land in var/screenshots/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client

from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store
from imagery.uploads import store_small_upload
from tests.conftest import REPO

# Playwright's sync API runs an event loop in the test's thread; the ORM calls the tests make between
# browser steps are still plain synchronous code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = Path("/usr/bin/chromium")
# Playwright adds --headless and a fresh, temporary --user-data-dir itself; these keep Chromium off the network.
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
SCREENSHOTS = REPO / "var" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}


def _install_chromium() -> str | None:
    """Install Debian's chromium when missing; return why it cannot be had, or None when it is there."""
    if CHROMIUM.exists():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"{CHROMIUM} is missing and cannot be installed here (needs root and apt-get): run scripts/setup.sh"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        if result.returncode != 0:
            return f"{CHROMIUM} is missing and `{' '.join(command)}` failed: {result.stderr.strip()[-300:]}"
    return None if CHROMIUM.exists() else f"{CHROMIUM} is still missing after apt-get install chromium"


def map_pixel(page, x: float, y: float) -> tuple[float, float]:
    """Where the map coordinate (x, y) (EPSG:3857) lies in the map element, from the view the element describes:
    data-view-center, data-view-resolution and data-view-size (the workspace's map is never rotated). Read once
    the view is at rest: during a glide (a fit, "Zoom to") the point is still moving on screen."""
    page.wait_for_function("() => document.querySelector('[data-testid=map]').dataset.viewMoving !== 'true'")
    center, resolution, size = page.locator("[data-testid=map]").evaluate(
        "e => [e.dataset.viewCenter, e.dataset.viewResolution, e.dataset.viewSize]"
    )
    cx, cy = (float(v) for v in center.split(","))
    width, height = (float(v) for v in size.split(","))
    return (x - cx) / float(resolution) + width / 2, (cy - y) / float(resolution) + height / 2


@pytest.fixture(scope="session")
def browser():
    reason = _install_chromium()
    if reason:
        pytest.skip(reason)
    if not (REPO / "frontend" / "dist" / ".vite" / "manifest.json").is_file():
        pytest.fail("The web app is not built: run `npm ci && npm run build` in frontend/ (scripts/setup.sh does).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def app_server(live_server, settings):
    """The live server, with the URLs it hands out (signed uploads, tiles) pointing at itself."""
    settings.PUBLIC_BASE_URL = live_server.url
    settings.TILE_BASE_URL = live_server.url
    get_blob_store.cache_clear()
    yield live_server
    get_blob_store.cache_clear()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if call.when == "call":
        item.browser_test_failed = outcome.get_result().failed


@pytest.fixture
def page(browser, app_server, request):
    """A fresh browser context per test; uncaught page errors fail the test; a failure leaves a screenshot."""
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1, locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    yield page
    if getattr(request.node, "browser_test_failed", False):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"failed-{request.node.name}.png"))
    context.close()
    assert not errors, errors


@pytest.fixture
def sign_in(page, app_server):
    """Put a signed-in session for `user` into the browser (the sign-in form itself is tested once)."""

    def do(user) -> None:
        client = Client()
        client.force_login(user)
        name = django_settings.SESSION_COOKIE_NAME
        page.context.add_cookies([{"name": name, "value": client.cookies[name].value, "url": app_server.url}])

    return do


@pytest.fixture
def screenshot(page):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(name: str) -> Path:
        path = SCREENSHOTS / f"{name}.png"
        page.wait_for_function(
            "() => [...document.querySelectorAll('[data-tiles-pending]')].every(e => e.dataset.tilesPending === '0')"
            " && [...document.images].every(i => i.complete)",
            timeout=15_000,
        )
        page.wait_for_timeout(300)  # let transitions settle
        page.screenshot(path=str(path))
        return path

    return take


@pytest.fixture
def ready_sample_image(project, personas, tmp_path) -> Image:
    """A real generated GeoTIFF, stored and ingested into a COG in this process (no worker needed)."""
    raster = write_sample_geotiff(tmp_path / "orchard.tif", size=512, trees=12, seed=3)
    with raster.path.open("rb") as file:
        image = store_small_upload(project, personas.owner, file, filename="orchard.tif", name="Orchard")
    assert ingest_image(str(image.pk)) == Image.Status.READY
    image.refresh_from_db()
    return image
