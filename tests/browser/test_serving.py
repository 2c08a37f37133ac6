"""The built web app is served by Django at /app/ (every /app/... path), behind sign-in, with no CDN."""

from __future__ import annotations

import re

import pytest

from picterra import frontend_views


def test_app_needs_sign_in_then_serves_the_built_page_for_any_app_path(client, personas):
    response = client.get("/app/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/?next=/app/")
    client.force_login(personas.member)
    if frontend_views.frontend_entry() is None:
        pytest.skip("frontend/dist is not built (scripts/setup.sh builds it)")
    for path in ("/app/", "/app/projects/0b7c6a52-8d0e-4a47-9a47-6f1d2f7d5a11", "/app/anything/else"):
        page = client.get(path)
        assert page.status_code == 200, path
        html = page.content.decode()
        assert re.search(r'<script type="module" src="/static/app/assets/[^"]+\.js"', html)
        assert '<link rel="stylesheet" href="/static/app/assets/' in html
        assert '"username": "mario"' in html
        assert "cdn" not in html.lower() and "https://" not in html
    assert "csrftoken" in client.cookies


def test_app_says_how_to_build_it_when_it_is_not_built(client, personas, monkeypatch, tmp_path):
    monkeypatch.setattr(frontend_views, "FRONTEND_DIST", tmp_path / "missing")
    client.force_login(personas.member)
    response = client.get("/app/")
    assert response.status_code == 503
    assert "npm run build" in response.content.decode()


def test_the_built_assets_are_served_as_static_files(client, personas):
    client.force_login(personas.member)
    entry = frontend_views.frontend_entry()
    if entry is None:
        pytest.skip("frontend/dist is not built (scripts/setup.sh builds it)")
    from django.contrib.staticfiles import finders

    for url in [entry["script"], *entry["styles"]]:
        assert finders.find(url.removeprefix("/static/")), url
