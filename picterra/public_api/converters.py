"""Path converters for the public API's ids: a path segment is parsed once, in the URL, not in each view.

An id converter accepts every segment `str` does: a malformed id still reaches its view, which answers it
exactly as an id that does not exist (after authentication, with the view's own 404), never the catch-all's
"No such endpoint". What it adds is the parsing: the view receives a `PublicId`, a `str` (so messages quote
the id as the client wrote it) that knows the UUID it names, or that it names none.
"""

from __future__ import annotations

from uuid import UUID

from drf_spectacular.types import OpenApiTypes


class PublicId(str):
    """An id as the client wrote it; `.uuid` is the UUID it names, or None when it names none."""

    uuid: UUID | None

    def __new__(cls, value: str) -> PublicId:
        text = super().__new__(cls, value)
        try:
            text.uuid = UUID(str(value))
        except ValueError:
            text.uuid = None
        return text


def public_id(value) -> PublicId:
    """A path segment or a body field as an id (a `PublicId` is returned as it is)."""
    return value if isinstance(value, PublicId) else PublicId(str(value))


class PublicIdConverter:
    """`<pid:raster_id>` (registered by urls.py): a raster, detector, folder, vector layer, operation or upload."""

    regex = "[^/]+"  # what `str` matches: see the module's docstring

    def to_python(self, value: str) -> PublicId:
        return PublicId(value)

    def to_url(self, value) -> str:
        return str(value)


#: How the OpenAPI schema documents each converter (drf-spectacular's PATH_CONVERTER_OVERRIDES): a string,
#: like `str`, since any segment reaches the view.
SCHEMA_OVERRIDES = {"pid": OpenApiTypes.STR}
