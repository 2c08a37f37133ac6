"""OpenAPI schema hooks (drf-spectacular)."""

from __future__ import annotations


def only_api_v1(endpoints: list, **kwargs) -> list:
    """Keep our own API in /api/schema/: the public API v2 is described by its own schema."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/")]
