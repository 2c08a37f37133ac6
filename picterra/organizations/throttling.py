"""Per-key throttling for scripts: too many requests get 429 with a Retry-After header."""

from __future__ import annotations

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from picterra.organizations.models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    """Counts requests per API key (session users of the web app are not throttled).

    The rate is read from settings on every request (`API_KEY_THROTTLE_RATE`), so it can change without
    a code change; DRF answers 429 and sets `Retry-After`, which the official client honours.
    """

    scope = "api_key"

    def get_rate(self) -> str | None:
        return settings.API_KEY_THROTTLE_RATE or None

    def allow_request(self, request, view) -> bool:
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request, view) -> str | None:
        if not isinstance(request.auth, ApiKey):
            return None
        return self.cache_format % {"scope": self.scope, "ident": request.auth.pk}
