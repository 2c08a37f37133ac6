"""WSGI entry point of the tile server: the web server's code and settings, answering only tile URLs.

Run as its own process so that rendering tiles never takes the API's workers (`Procfile` `tiles`,
`docker-compose.yml` `tiles`)::

    gunicorn imagery.tile_wsgi --bind 127.0.0.1:8001 --workers 2 --threads 4

TileJSON documents point their tile URLs at ``TILE_BASE_URL``; the web server answers the same tile URLs
too, so a single process also works.
"""

from __future__ import annotations

import os

import django
from django.core.handlers.wsgi import WSGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "picterra.settings")
django.setup(set_prefix=False)

from django.urls import path  # noqa: E402

from imagery import tile_urls  # noqa: E402
from picterra.health import healthz  # noqa: E402

# This module is the tile server's URLconf: the tile URLs and a health check, nothing of the API.
urlpatterns = [*tile_urls.urlpatterns, path("healthz", healthz, name="healthz")]


class TileWSGIHandler(WSGIHandler):
    """Django's handler, resolving every request against this module's URLs instead of ROOT_URLCONF."""

    def get_response(self, request):
        request.urlconf = __name__
        return super().get_response(request)


application = TileWSGIHandler()
