"""REST machinery shared by every app's `api/` package: organization scoping, GeoJSON fields, errors."""

from picterra.api.errors import exception_handler

__all__ = ["exception_handler"]
