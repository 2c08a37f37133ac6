"""The landing page (until the map UI lands); the health check is picterra/health.py."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

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

