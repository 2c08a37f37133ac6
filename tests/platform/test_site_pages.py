"""The server-rendered pages carry the product's name (Groundcount), its stylesheet and favicon, and say that
the platform speaks Picterra's public API; ``/favicon.ico`` answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders

from picterra import frontend_views

FAVICON = Path(__file__).resolve().parents[2] / "picterra" / "static" / "picterra" / "favicon.svg"


def _static_links(html: str) -> list[str]:
    return re.findall(r'<link rel="(?:stylesheet|icon)"[^>]* href="(/static/[^"]+)"', html)


def test_sign_in_page_is_named_styled_and_says_what_it_speaks(client, db):
    html = client.get("/accounts/login/").content.decode()
    assert "<title>Sign in · Groundcount</title>" in html
    assert "Sign in to Groundcount" in html
    assert "speaks Picterra's public API" in html.replace("&#x27;", "'")
    assert "Picterra platform" not in html
    links = _static_links(html)
    assert "/static/picterra/site.css" in links and "/static/picterra/favicon.svg" in links
    for url in links:  # each linked file is a static file the server has
        assert finders.find(url.removeprefix("/static/")), url
    # The Content-Security-Policy allows no inline script; the page's look comes from the stylesheet file.
    assert "<script" not in html and "<style" not in html and " style=" not in html


def test_a_failed_sign_in_says_so_on_the_styled_page(client, personas):
    response = client.post("/accounts/login/", {"username": "olivia", "password": "wrong"})
    html = response.content.decode()
    assert response.status_code == 200 and 'class="form-error"' in html and "Groundcount" in html


def test_favicon_ico_answers_with_the_brand_mark(client, db):
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    body = response.content
    assert body == FAVICON.read_bytes() and body.startswith(b"<svg") and len(body) < 2048
    assert client.head("/favicon.ico").status_code == 200


def test_the_web_app_page_links_the_favicon_and_is_named(client, personas):
    client.force_login(personas.member)
    if frontend_views.frontend_entry() is None:
        pytest.skip("frontend/dist is not built (scripts/setup.sh builds it)")
    html = client.get("/app/").content.decode()
    assert "<title>Groundcount</title>" in html
    assert '<link rel="icon" type="image/svg+xml" href="/static/picterra/favicon.svg">' in html


def test_home_page_is_named_and_styled(client, personas, project):
    client.force_login(personas.member)
    html = client.get("/").content.decode()
    assert "Groundcount" in html and "Picterra platform" not in html
    assert "/static/picterra/site.css" in _static_links(html) and " style=" not in html
