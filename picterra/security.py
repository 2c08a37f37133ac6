"""Who may start the server how, how fast credentials may be guessed, and which headers every answer carries.

* **Exposure** (pure functions, read by settings and ``seed_demo``): a server bound to a loopback address
  (``HOST`` 127.0.0.1 / localhost / ::1) is reachable from this machine only, so the embedded run may keep
  its convenient defaults there (a generated ``var/secret_key``, the demo account ``demo`` /
  ``demo-password``). Any other ``HOST`` must be given an explicit ``SECRET_KEY`` and ``DEMO_PASSWORD``, or
  it refuses to start (``startup_problem``).
* **Failed authentication** is counted in the Django cache (Redis when ``CACHE_URL`` is set, which
  ``make run`` points at its embedded Redis, so every gunicorn worker and the tile server share the counts):
  per username and per client address for sign-in forms, per client address for wrong ``X-Api-Key``
  headers. Past the limit the answer is 429 with ``Retry-After`` until the window ends, whatever the
  credentials; a correct guess is not even checked.
* **Headers**: ``SecurityHeadersMiddleware`` adds a Content-Security-Policy, Permissions-Policy and
  X-Frame-Options to every response (web server and tile server); Django's ``SecurityMiddleware`` adds
  HSTS (on HTTPS requests only), nosniff, Referrer-Policy and Cross-Origin-Opener-Policy.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)

DEFAULT_DEMO_PASSWORD = "demo-password"


# --------------------------------------------------------------------------------------------------------------
# Exposure: what a bind address allows (no Django needed)


def is_loopback_host(host: str) -> bool:
    """True for addresses only this machine reaches: localhost, 127.0.0.0/8, ::1 (bracketed or not).

    Anything else, including ``0.0.0.0``, an empty host (all interfaces) and host names, is the network.
    """
    name = host.strip().lower().removeprefix("[").removesuffix("]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def url_is_loopback(url: str) -> bool:
    """True when the URL's host is a loopback address (``http://127.0.0.1:8000``, ``http://localhost``)."""
    return is_loopback_host(urlsplit(url).hostname or "")


def loopback_only(host: str, public_base_url: str) -> bool:
    """The server listens on loopback and is reached on loopback: no other machine can talk to it."""
    return is_loopback_host(host) and url_is_loopback(public_base_url)


def startup_problem(host: str, secret_key: str, demo_password: str) -> str | None:
    """Why a server bound to ``host`` must not start with these settings, in words that say what to set.

    On loopback nothing is required. On any other address a generated secret key on disk and the demo
    account's well-known password would be open to the network, so both must be given explicitly.
    """
    if is_loopback_host(host):
        return None
    missing = [name for name, value in (("SECRET_KEY", secret_key), ("DEMO_PASSWORD", demo_password)) if not value]
    if not missing:
        return None
    wanted = {
        "SECRET_KEY": "SECRET_KEY to a long random string (for example the output of "
        "`python3 -c 'import secrets; print(secrets.token_urlsafe(50))'`)",
        "DEMO_PASSWORD": "DEMO_PASSWORD to the password the demo account should have",
    }
    return (
        f"HOST={host or '(all interfaces)'} makes the platform reachable from other machines, so it will not "
        f"start without credentials nobody can guess. Set {' and '.join(wanted[name] for name in missing)}, "
        "or start it with HOST=127.0.0.1 to keep it on this machine."
    )


@dataclass(frozen=True)
class DemoAccount:
    """How ``seed_demo`` creates the demo account."""

    password: str
    generated: bool  # a random password, printed once when the account is created
    superuser: bool  # Django admin rights: only when no other machine can reach the server


def demo_account_policy(
    host: str, public_base_url: str, demo_password: str, token: Callable[[int], str] = secrets.token_urlsafe
) -> DemoAccount:
    """The fixed ``demo-password`` and admin rights only on a loopback-only server; elsewhere the explicit
    ``DEMO_PASSWORD`` or a random one, and an ordinary (non-staff) account."""
    local = loopback_only(host, public_base_url)
    if demo_password:
        return DemoAccount(demo_password, generated=False, superuser=local)
    if local:
        return DemoAccount(DEFAULT_DEMO_PASSWORD, generated=False, superuser=True)
    return DemoAccount(token(12), generated=True, superuser=False)


# --------------------------------------------------------------------------------------------------------------
# Failed authentication: counted per username and per client address, in the shared cache


def client_ip(request: HttpRequest) -> str:
    """The caller's address: ``REMOTE_ADDR``, or behind ``TRUSTED_PROXY_COUNT`` proxies the address the
    outermost trusted proxy saw (counted from the right of ``X-Forwarded-For``, so a forged entry sent by
    the client itself is never used)."""
    hops = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
        forwarded = [part for part in forwarded if part]
        if len(forwarded) >= hops:
            return forwarded[-hops][:64]
    return request.META.get("REMOTE_ADDR") or "unknown"


def _counter(scope: str, ident: str) -> str:
    digest = hashlib.sha256(ident.strip().lower().encode()).hexdigest()[:40]
    return f"auth-failures:{scope}:{digest}"


def _limits(username: str | None, ip: str | None, ip_scope: str) -> list[tuple[str, int]]:
    limits = []
    if username is not None:
        limits.append((_counter("username", username), settings.AUTH_FAILURE_LIMIT_PER_USERNAME))
    if ip is not None:
        limits.append((_counter(ip_scope, ip), settings.AUTH_FAILURE_LIMIT_PER_IP))
    return limits


def blocked_for(*, username: str | None = None, ip: str | None = None, ip_scope: str = "signin-ip") -> int:
    """Seconds until these credentials may be tried again (0: now). A cache outage lets requests through."""
    window = settings.AUTH_FAILURE_WINDOW_S
    now = time.time()
    wait = 0
    try:
        for key, limit in _limits(username, ip, ip_scope):
            values = cache.get_many([f"{key}:n", f"{key}:start"])
            if int(values.get(f"{key}:n") or 0) >= limit:
                started = float(values.get(f"{key}:start") or now)
                wait = max(wait, max(1, math.ceil(started + window - now)))
    except Exception:  # noqa: BLE001 - throttling must never turn a sign-in into a server error
        logger.warning("Cannot read the failed sign-in counters; not throttling this request.", exc_info=True)
        return 0
    return wait


def record_failure(*, username: str | None = None, ip: str | None = None, ip_scope: str = "signin-ip") -> None:
    """Count one failed attempt; each counter's window starts at its first failure (fixed window)."""
    window = settings.AUTH_FAILURE_WINDOW_S
    try:
        for key, _limit in _limits(username, ip, ip_scope):
            cache.add(f"{key}:start", time.time(), window)
            if not cache.add(f"{key}:n", 1, window):
                try:
                    cache.incr(f"{key}:n")
                except ValueError:  # expired between add() and incr()
                    cache.set(f"{key}:n", 1, window)
    except Exception:  # noqa: BLE001 - see blocked_for
        logger.warning("Cannot count a failed sign-in.", exc_info=True)


def forget_failures(username: str) -> None:
    """A successful sign-in clears its username's count (not its address's)."""
    key = _counter("username", username)
    try:
        cache.delete_many([f"{key}:n", f"{key}:start"])
    except Exception:  # noqa: BLE001 - see blocked_for
        logger.warning("Cannot clear the failed sign-in counter.", exc_info=True)


def api_key_blocked_for(request: HttpRequest) -> int:
    return blocked_for(ip=client_ip(request), ip_scope="api-key-ip")


def record_api_key_failure(request: HttpRequest) -> None:
    record_failure(ip=client_ip(request), ip_scope="api-key-ip")


def on_user_login_failed(sender, credentials: dict, request: HttpRequest | None = None, **kwargs) -> None:
    """``user_login_failed`` receiver: every sign-in form (ours, the admin's, the browsable API's) counts."""
    username = str(credentials.get("username") or "")
    record_failure(username=username, ip=client_ip(request) if request is not None else None)


def on_user_logged_in(sender, request: HttpRequest | None, user, **kwargs) -> None:
    forget_failures(user.get_username())


@lru_cache(maxsize=1)
def _sign_in_paths() -> frozenset[str]:
    from django.urls import NoReverseMatch, reverse

    paths = set()
    for name in ("login", "admin:login", "rest_framework:login"):
        try:
            paths.add(reverse(name, urlconf=settings.ROOT_URLCONF))
        except NoReverseMatch:
            pass
    return frozenset(paths)


def too_many_attempts(wait: int) -> HttpResponse:
    minutes = max(1, math.ceil(wait / 60))
    message = (
        "Too many failed sign-in attempts for this account or from this address. "
        f"Try again in {minutes} minute{'s' if minutes != 1 else ''}."
    )
    response = HttpResponse(render_to_string("registration/throttled.html", {"message": message}), status=429)
    response["Retry-After"] = str(wait)
    response["Cache-Control"] = "no-store"
    return response


class SignInThrottleMiddleware:
    """Refuses sign-in form posts with 429 + ``Retry-After`` once the username or the address has failed
    ``AUTH_FAILURE_LIMIT_PER_*`` times within ``AUTH_FAILURE_WINDOW_S`` (failures are counted by
    ``on_user_login_failed``); the password is then not checked at all."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and request.path_info in _sign_in_paths():
            wait = blocked_for(username=str(request.POST.get("username", "")), ip=client_ip(request))
            if wait:
                return too_many_attempts(wait)
        return self.get_response(request)


# --------------------------------------------------------------------------------------------------------------
# Headers on every response


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def content_security_policy(public_base_url: str, tile_base_url: str, blobstore_url: str) -> str:
    """The page policy: scripts only from this server (the Vite build, Swagger UI, the admin), styles from
    here plus inline ones (OpenLayers and the templates set style attributes), images and requests also from
    the tile server and the public URL (another origin when TILE_BASE_URL / PUBLIC_BASE_URL differ), uploads
    straight to Google Cloud Storage when it is the blob store; no plugins, no framing."""
    extra = []
    for url in (public_base_url, tile_base_url):
        origin = _origin(url)
        if origin and origin not in extra:
            extra.append(origin)
    connect = [*extra, *(["https://storage.googleapis.com"] if blobstore_url.startswith("gs://") else [])]
    directives = {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:", "blob:", *extra],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'", *connect],
        "worker-src": ["'self'", "blob:"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{name} {' '.join(values)}" for name, values in directives.items())


PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=(), midi=()"


class SecurityHeadersMiddleware:
    """Adds CSP, Permissions-Policy and X-Frame-Options to every response (a view may set its own)."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.csp = content_security_policy(settings.PUBLIC_BASE_URL, settings.TILE_BASE_URL, settings.BLOBSTORE_URL)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.csp)
        response.headers.setdefault("Permissions-Policy", PERMISSIONS_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        response.headers.setdefault("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY)
        return response
