"""`X-Api-Key` authentication for scripts and integrations (the official client's header)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from picterra import security
from picterra.organizations.models import ApiKey


class ApiKeyGuessing(exceptions.Throttled):
    """429 with Retry-After: too many requests with a wrong or revoked key came from this address."""

    def __init__(self, wait: int) -> None:
        super().__init__(
            wait=wait,
            detail="Too many requests with a wrong or revoked API key came from this address.",
        )  # DRF adds "Expected available in N seconds."


class ApiKeyAuthentication(authentication.BaseAuthentication):
    header = "HTTP_X_API_KEY"

    def authenticate(self, request):
        """The key's user and the key; an address that sent too many wrong keys gets 429 before any lookup."""
        raw = request.META.get(self.header)
        if not raw:
            return None
        wait = security.api_key_blocked_for(request)
        if wait:
            raise ApiKeyGuessing(wait)
        key = ApiKey.objects.authenticate(raw.strip())
        if key is None:
            security.record_api_key_failure(request)
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return key.user, key

    def authenticate_header(self, request) -> str:
        return "X-Api-Key"


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "apiKey", "in": "header", "name": "X-Api-Key"}
