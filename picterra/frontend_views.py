"""The web app (frontend/, built by Vite): one page for every /app/... path; the app routes in the browser.

The built files live in frontend/dist and are served as static files under /static/app/ (STATICFILES_DIRS);
this view renders the page that loads them, with the entry's file names read from Vite's manifest.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.templatetags.static import static
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie

FRONTEND_DIST = Path(settings.BASE_DIR) / "frontend" / "dist"
STATIC_PREFIX = "app"

NOT_BUILT = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Web app not built</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; line-height: 1.5">
<h1>The web app is not built yet</h1>
<p>Run <code>make setup</code> (or <code>cd frontend &amp;&amp; npm ci &amp;&amp; npm run build</code>)
and reload this page. The <a href="/api/v1/">API</a> works without it.</p></body></html>"""


@lru_cache(maxsize=4)
def _entry(manifest_path: Path, mtime: float) -> dict | None:
    manifest = json.loads(manifest_path.read_text())
    entry = next((chunk for chunk in manifest.values() if chunk.get("isEntry")), None)
    if entry is None:
        return None
    return {
        "script": static(f"{STATIC_PREFIX}/{entry['file']}"),
        "styles": [static(f"{STATIC_PREFIX}/{css}") for css in entry.get("css", [])],
    }


def frontend_entry() -> dict | None:
    """The built entry's script and style URLs, or None when the app is not built."""
    manifest_path = FRONTEND_DIST / ".vite" / "manifest.json"
    try:
        mtime = manifest_path.stat().st_mtime
    except FileNotFoundError:
        return None
    return _entry(manifest_path, mtime)


def frontend_built() -> bool:
    return (FRONTEND_DIST / ".vite" / "manifest.json").is_file()


@ensure_csrf_cookie
@login_required
def app(request, path: str = ""):
    entry = frontend_entry()
    if entry is None:
        return HttpResponse(NOT_BUILT, status=503)
    config = {
        "username": request.user.get_username(),
        "isStaff": request.user.is_staff,
        "loginUrl": settings.LOGIN_URL,
        "logoutUrl": reverse("logout"),
        "apiDocsUrl": reverse("api-docs"),
    }
    return render(request, "frontend/app.html", {"entry": entry, "config": config})
