"""Sign in, upload through the web app with a progress bar, see the image become ready, create a detector;
a failed transfer is retried, and a file that is not an image shows the server's plain-words message."""

from __future__ import annotations

import re

import pytest

from detectors.models import Detector, DetectorImage
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.sample import write_sample_geotiff
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RECORD_PROGRESS = """() => {
  window.__progress = [];
  new MutationObserver(() => {
    for (const bar of document.querySelectorAll('[role=progressbar]'))
      window.__progress.push(Number(bar.getAttribute('aria-valuenow')));
  }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['aria-valuenow']});
}"""


def test_sign_in_upload_see_it_ready_and_create_a_detector(
    page, app_server, personas, project, celery_worker_process, screenshot, tmp_path
):
    raster = write_sample_geotiff(tmp_path / "vineyard-north.tif", size=1024, trees=30, seed=7)

    page.goto(f"{app_server.url}/app/")
    assert "/accounts/login/" in page.url
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "pw-olivia")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/app/$"))
    card = page.locator("[data-testid=project-card]", has_text="Vineyards")
    card.wait_for()
    page.wait_for_function("() => [...document.querySelectorAll('.card-meta')].every(e => e.textContent !== '…')")
    screenshot("01-projects")

    card.click()
    page.locator("h1", has_text="Vineyards").wait_for()
    page.evaluate(RECORD_PROGRESS)
    # A slow link (about 1 MB/s up) so the progress bar is seen moving, and photographed half-way.
    cdp = page.context.new_cdp_session(page)
    conditions = {"offline": False, "latency": 20, "downloadThroughput": -1, "uploadThroughput": 1_000_000}
    cdp.send("Network.emulateNetworkConditions", conditions)
    page.set_input_files("[data-testid=file-input]", str(raster.path))
    page.wait_for_function(
        "() => { const bar = document.querySelector('[role=progressbar]');"
        " const value = bar && +bar.getAttribute('aria-valuenow'); return value >= 15 && value <= 85; }"
    )
    screenshot("02-project-uploading")
    cdp.send("Network.emulateNetworkConditions", {**conditions, "uploadThroughput": -1})
    ready = page.locator("[data-testid=image-row][data-status=ready]", has_text="vineyard-north")
    ready.wait_for(timeout=90_000)
    progress = page.evaluate("window.__progress")
    assert max(progress) == 100 and any(0 < value < 100 for value in progress), progress
    image = Image.objects.get(project=project)
    assert image.status == Image.Status.READY and image.width == 1024
    page.wait_for_timeout(600)  # the thumbnail's tiles
    screenshot("03-project-images")

    page.click("[data-testid=new-detector]")
    page.fill("input[name=detector-name]", "Vine stocks")
    page.fill("input[name=class-name]", "vine")
    page.click("[data-testid=detector-form] button[type=submit]")
    page.wait_for_url(re.compile(r"/app/detectors/[0-9a-f-]{36}"))
    page.locator("[data-testid=map][data-ready=true]").wait_for()
    detector = Detector.objects.get(name="Vine stocks")
    assert [c.name for c in detector.classes.all()] == ["vine"]
    assert DetectorImage.objects.filter(detector=detector, image=image).exists()
    assert page.locator("[data-step=training-area][data-done=false]").count() == 1
    screenshot("05-workspace-new")


def test_an_interrupted_upload_is_retried_and_a_broken_file_shows_the_servers_message(
    page, app_server, sign_in, personas, project, screenshot
):
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/projects/{project.pk}")
    page.locator("h1", has_text="Vineyards").wait_for()

    dropped = []

    def drop_first_put(route):
        if not dropped:
            dropped.append(route.request.url)
            route.abort("connectionreset")
        else:
            route.continue_()

    page.route("**/blobs/**", drop_first_put)
    page.set_input_files(
        "[data-testid=file-input]",
        files=[{"name": "broken.tif", "mimeType": "image/tiff", "buffer": b"II*\x00 this is not really a TIFF " * 400}],
    )
    row = page.locator("[data-testid=upload-row][data-phase=failed]")
    row.wait_for()
    assert "interrupted" in row.inner_text()
    # Route handlers only run while the test talks to Playwright: stop intercepting before waiting on the DB.
    page.unroute("**/blobs/**")
    page.click("[data-testid=retry-upload]")
    page.locator("[data-testid=upload-row]").wait_for(state="detached")

    image = wait_for(lambda: Image.objects.filter(project=project, status=Image.Status.UPLOADED).first(), timeout=30)
    assert dropped, "the first PUT was not intercepted"
    assert ingest_image(str(image.pk)) == Image.Status.FAILED
    image.refresh_from_db()
    assert image.error
    message = page.locator("[data-testid=image-row][data-status=failed] [data-testid=image-error]")
    message.wait_for(timeout=20_000)
    assert message.inner_text().strip() == image.error.strip()
    assert "Traceback" not in page.content()
    screenshot("04-upload-error")
