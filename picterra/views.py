"""The landing page (until the map UI lands) and the favicon; the health check is picterra/health.py."""

from __future__ import annotations

import functools
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

from detectors.models import Detector
from imagery.models import Image
from picterra.frontend_views import frontend_built
from picterra.organizations.models import Project


@login_required
def home(request):
    projects = Project.objects.for_user(request.user).select_related("organization")
    images = Image.objects.for_user(request.user).select_related("project")[:50]
    detectors = Detector.objects.for_user(request.user)[:50]
    context = {"projects": projects, "images": images, "detectors": detectors}
    context["app_url"] = "/app/" if frontend_built() else None
    return render(request, "home.html", context)


FAVICON = Path(__file__).resolve().parent / "static" / "picterra" / "favicon.svg"


@functools.cache
def _favicon_bytes() -> bytes:
    return FAVICON.read_bytes()  # under 1 KB, read once per process rather than per request


@require_safe
def favicon(request) -> HttpResponse:
    """``/favicon.ico``, asked for by browsers and tools that read no ``<link rel=icon>``: the SVG mark."""
    response = HttpResponse(_favicon_bytes(), content_type="image/svg+xml")
    response["Cache-Control"] = "public, max-age=86400"
    return response
