"""The URL configuration its OpenAPI schema is generated from: only the public API, at its real prefix."""

from django.urls import include, path

from picterra.public_api.converters import SCHEMA_OVERRIDES
from picterra.public_api.urls import urlpatterns as public_api_urls

urlpatterns = [path("public/api/v2/", include((public_api_urls, "public_api"), namespace="public"))]

PUBLIC_SCHEMA = {
    "TITLE": "Groundcount public API v2 (speaks Picterra's public API)",
    "DESCRIPTION": (
        "What the official `picterra` Python client talks to. Authenticate with `X-Api-Key`; lists are paged "
        "with `page_number`; long actions return an operation to poll at `operations/<id>/`."
    ),
    "VERSION": "2.0.0",
    "PREPROCESSING_HOOKS": [],
    # Path ids (`<pid:...>`) are documented as strings, as any segment reaches the view.
    "PATH_CONVERTER_OVERRIDES": SCHEMA_OVERRIDES,
}
