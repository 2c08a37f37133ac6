"""The sign-in page looks like the app and names it (Groundcount), the favicon loads, and the upload picker
offers image files only: a file that is not one is refused with the server's plain words, without a transfer."""

from __future__ import annotations

import re

import pytest

from imagery.models import Image

pytestmark = pytest.mark.django_db(transaction=True)

NOT_AN_IMAGE = "This file is not an image we can read (accepted: GeoTIFF, JPEG 2000, PNG, JPEG)"


def test_the_sign_in_page_is_styled_named_and_has_a_favicon(page, app_server, personas, screenshot):
    page.goto(f"{app_server.url}/app/")
    assert "/accounts/login/" in page.url
    assert page.title() == "Sign in · Groundcount"
    page.locator("h1", has_text="Sign in to Groundcount").wait_for()
    # The stylesheet applied (the CSP let it load): the button wears the app's accent colour.
    button_colour = page.locator("button[type=submit]").evaluate("b => getComputedStyle(b).backgroundColor")
    assert button_colour == "rgb(31, 111, 235)"
    assert "speaks Picterra's public API" in page.locator("[data-testid=about]").inner_text()
    icon = page.locator("link[rel=icon]").get_attribute("href")
    assert page.request.get(f"{app_server.url}{icon}").status == 200
    favicon = page.request.get(f"{app_server.url}/favicon.ico")
    assert favicon.status == 200 and favicon.headers["content-type"] == "image/svg+xml"
    page.fill("#id_username", "olivia")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    page.locator(".form-error").wait_for()
    screenshot("00-sign-in")

    page.fill("#id_password", "pw-olivia")
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r"/app/$"))
    page.locator(".brand", has_text="Groundcount").wait_for()
    assert page.title().endswith("Groundcount")
    assert page.locator("link[rel=icon]").get_attribute("href") == icon


def test_the_picker_offers_images_only_and_a_text_file_is_refused_plainly(
    page, app_server, sign_in, personas, project, screenshot
):
    sign_in(personas.member)
    page.goto(f"{app_server.url}/app/projects/{project.pk}")
    page.locator("h1", has_text="Vineyards").wait_for()
    picker = page.locator("[data-testid=file-input]")
    assert picker.get_attribute("accept") == ".tif,.tiff,.jp2,.j2k,.png,.jpg,.jpeg"
    sent = []
    page.on("request", lambda request: sent.append(request.url) if "/images/" in request.url else None)
    # A file dropped (or picked with "All files") is not filtered by `accept`: the app checks its name too.
    picker.set_input_files(files=[{"name": "field-notes.txt", "mimeType": "text/plain", "buffer": b"notes\n" * 50}])
    row = page.locator("[data-testid=upload-row][data-phase=failed]", has_text="field-notes.txt")
    row.wait_for()
    assert row.locator("[role=alert]").inner_text().strip() == NOT_AN_IMAGE
    assert row.locator("[data-testid=retry-upload]").is_hidden()
    screenshot("04b-upload-not-an-image")
    assert not [url for url in sent if "uploads" in url] and not Image.objects.filter(project=project).exists()
