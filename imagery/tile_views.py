"""Django adapters for map tiles: the tile view and the TileJSON document of an image.

The view validates parameters, finds the image the caller may see, calls ``imagery.tiles.render_tile`` and
maps its outcomes to HTTP through one small table (``_no_tile``). What it answers:

* ``200`` with the tile; ``Cache-Control: private, max-age=31536000, immutable`` when the URL fixes
  everything the pixels depend on (the COG version in the path, ``bands`` and ``rescale`` in the query, as
  TileJSON's URLs do); ``private, max-age=60`` when ``bands``/``rescale`` come from the image's editable
  display settings;
* outside the image (or only nodata): a transparent PNG/WebP built once per process, cached like a tile;
  a ``404`` for JPEG, which has no transparency;
* a stale ``cog_version`` (the image was ingested again): ``302`` to the same tile of the current version,
  never cached, so an open map keeps working; an image without a COG (not ready): ``404``;
* another organization's image, or no such image: ``404``; no credentials or a bad API key: ``401``;
  malformed ``bands``/``rescale``: ``400``; a z/x/y that is not on the grid: ``404``.

Authentication is the API's own: the session cookie or ``X-Api-Key``, and ``Image.objects.for_user`` decides
visibility. Tile servers answer many small requests per map view, so the outcome of that check is cached in
the process for ``TILE_AUTH_CACHE_S`` seconds per (credential, image); an API key sees only its own
organization's images, even when its user belongs to others. A revoked key, a removed membership or a
logout reaches the tile server within that time (0 turns the cache off). A new COG version is always seen at
once, because a URL whose version differs from the cached one goes back to the database.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.views.decorators.http import require_safe
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import APIView

from imagery import tiles
from imagery.models import Image
from imagery.storage import get_blob_store
from picterra.api.viewsets import scoped_to_key
from picterra.organizations.authentication import ApiKeyAuthentication
from picterra.security import api_key_blocked_for

EXTENSIONS: dict[str, tiles.TileFormat] = {"png": "png", "jpg": "jpeg", "jpeg": "jpeg", "webp": "webp"}
IMMUTABLE = "private, max-age=31536000, immutable"
SHORT_LIVED = "private, max-age=60"
NO_STORE = "private, no-store"


class BadTileParameters(ValueError):
    """A query parameter the caller can fix; the message says how."""


# --------------------------------------------------------------------------------------------------------------
# Parameters


def parse_bands(raw: str | None, band_count: int) -> tuple[int, ...] | None:
    """``"3,2,1"`` → (3, 2, 1); one or three 1-based band numbers, each at most ``band_count``."""
    if raw is None or raw == "":
        return None
    try:
        bands = tuple(int(part) for part in raw.split(","))
    except ValueError:
        raise BadTileParameters(
            "bands: give one or three band numbers separated by commas, e.g. bands=3,2,1."
        ) from None
    if len(bands) not in (1, 3):
        raise BadTileParameters("bands: give one band (grey) or three bands (red, green, blue).")
    if not all(1 <= b <= band_count for b in bands):
        raise BadTileParameters(f"bands: band numbers go from 1 to {band_count} for this image.")
    return bands


def parse_rescale(values: list[str], band_total: int) -> tuple[tuple[float, float], ...] | None:
    """``["0,3000", ...]`` → ((0.0, 3000.0), ...): one ``min,max`` for all bands or one per band shown."""
    if not values:
        return None
    ranges = []
    for value in values:
        try:
            low, high = (float(part) for part in value.split(","))
        except ValueError:
            raise BadTileParameters("rescale: give min,max pairs, e.g. rescale=0,3000 (repeat it per band).") from None
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise BadTileParameters("rescale: min must be smaller than max, both finite numbers.")
        ranges.append((low, high))
    if len(ranges) not in (1, band_total):
        raise BadTileParameters(f"rescale: give one min,max for all bands or one per band shown ({band_total}).")
    return tuple(ranges)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def parse_buffer(raw: str | None) -> int:
    """``"1"`` → 1: the pixels of the neighbouring tiles a tile repeats on each side (``tiles.TILE_BUFFERS``)."""
    if raw is None or raw == "" or raw == "0":
        return 0
    if raw == "1":
        return 1
    raise BadTileParameters("buffer: give 0 or 1 (pixels of the neighbouring tiles around each tile).")


def tile_query(
    bands: tuple[int, ...], rescale: tuple[tuple[float, float], ...] | None, buffer: int = 0
) -> list[tuple[str, str]]:
    """Query parameters that fix a tile's look, in the order tile URLs carry them."""
    query = [("bands", ",".join(str(b) for b in bands))]
    for low, high in rescale or ():
        query.append(("rescale", f"{_number(low)},{_number(high)}"))
    if buffer:
        query.append(("buffer", str(buffer)))
    return query


def tile_url_template(base_url: str, image_id, cog_version: str, scale: int, ext: str, query: list) -> str:
    """The XYZ template (``{z}/{x}/{y}`` left as is) of one image's tiles; see ``imagery/tile_urls.py``."""
    path = f"/tiles/images/{image_id}/{cog_version}/{{z}}/{{x}}/{{y}}@{scale}x.{ext}"
    return base_url.rstrip("/") + path + (f"?{urlencode(query, safe=',')}" if query else "")


# --------------------------------------------------------------------------------------------------------------
# Which image a request may read, cached briefly per process


@dataclass(frozen=True)
class TileSource:
    """What rendering needs from an image row, read once and reused for many tiles."""

    image_id: str
    cog_version: str  # "" while the image has no COG
    gdal_path: str
    gdal_env: dict
    band_count: int
    display_bands: tuple[int, ...]
    rescale: tuple[tuple[float, float], ...] | None  # one per band of the COG, or None
    nodata: float | None
    mercator_bounds: tuple[float, float, float, float] | None

    @classmethod
    def from_image(cls, image: Image) -> TileSource:
        if image.status != Image.Status.READY or not image.cog_key or not image.cog_version:
            return cls(str(image.pk), "", "", {}, 0, (), None, None, None)
        store = get_blob_store()
        band_count = image.band_count or 1
        display = tuple(image.display_bands) if len(image.display_bands or ()) in (1, 3) else (1, 2, 3)
        display = tuple(min(b, band_count) for b in display)
        rescale = image.rescale if isinstance(image.rescale, list) and len(image.rescale) == band_count else None
        bounds = None
        if image.crs and image.bounds:
            bounds = tiles.mercator_bounds(image.crs, tuple(image.bounds))
        return cls(
            image_id=str(image.pk),
            cog_version=image.cog_version,
            gdal_path=store.gdal_path(image.cog_key),
            gdal_env=store.gdal_env(),
            band_count=band_count,
            display_bands=display,
            rescale=tuple((float(lo), float(hi)) for lo, hi in rescale) if rescale else None,
            nodata=image.nodata,
            mercator_bounds=bounds,
        )

    def default_rescale(self, bands: tuple[int, ...]) -> tuple[tuple[float, float], ...] | None:
        return tuple(self.rescale[b - 1] for b in bands) if self.rescale else None


# An outcome of the permission check: a TileSource, or the HTTP status to answer.
_Outcome = TileSource | int


class _OutcomeCache:
    """(credential digest, image id) → (expiry, outcome), bounded; shared by the threads of a process."""

    MAX_ENTRIES = 10_000

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[float, _Outcome]] = {}

    def get(self, key: tuple[str, str]) -> _Outcome | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: tuple[str, str], outcome: _Outcome, ttl: float) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._entries) >= self.MAX_ENTRIES:
                self._entries = {k: v for k, v in self._entries.items() if v[0] >= now}
                if len(self._entries) >= self.MAX_ENTRIES:
                    self._entries.clear()
            self._entries[key] = (now + ttl, outcome)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_outcomes = _OutcomeCache()


def clear_tile_auth_cache() -> None:
    _outcomes.clear()


def _credential(request: HttpRequest) -> str | None:
    api_key = request.META.get(ApiKeyAuthentication.header)
    if api_key:
        return "k:" + hashlib.sha256(api_key.strip().encode()).hexdigest()
    session = request.COOKIES.get(settings.SESSION_COOKIE_NAME)
    if session:
        return "s:" + hashlib.sha256(session.encode()).hexdigest()
    return None


def _resolve(request: HttpRequest, image_id: str) -> _Outcome:
    """The database check: the API's authentication, then ``for_user`` narrowed to an API key's organization
    (the API's own visibility rule, ``scoped_to_key``). The outcome is cached per credential, and a key names
    one organization, so a cached outcome never serves another organization's image."""
    if request.META.get(ApiKeyAuthentication.header):
        try:
            user, key = ApiKeyAuthentication().authenticate(request)
        except exceptions.Throttled:
            return status.HTTP_429_TOO_MANY_REQUESTS
        except exceptions.AuthenticationFailed:
            return status.HTTP_401_UNAUTHORIZED
        images = Image.objects.for_user(user).filter(**{f"{Image.organization_lookup}_id": key.organization_id})
    else:
        user = request.user
        if not user or not user.is_authenticated:
            return status.HTTP_401_UNAUTHORIZED
        images = Image.objects.for_user(user)
    image = images.filter(pk=image_id).first()
    return status.HTTP_404_NOT_FOUND if image is None else TileSource.from_image(image)


def _tile_source(request: HttpRequest, image_id: str, cog_version: str) -> _Outcome:
    credential = _credential(request)
    if credential is None:
        return status.HTTP_401_UNAUTHORIZED
    ttl = settings.TILE_AUTH_CACHE_S
    key = (credential, image_id)
    outcome = _outcomes.get(key) if ttl > 0 else None
    if outcome is None or (isinstance(outcome, TileSource) and outcome.cog_version != cog_version):
        outcome = _resolve(request, image_id)
        if ttl > 0 and outcome != status.HTTP_429_TOO_MANY_REQUESTS:
            _outcomes.put(key, outcome, ttl)
    return outcome


# --------------------------------------------------------------------------------------------------------------
# The tile view


def _error(code: int, message: str) -> JsonResponse:
    response = JsonResponse({"detail": message}, status=code)
    response["Cache-Control"] = NO_STORE
    if code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = "X-Api-Key"
    return response


_STATUS_MESSAGES = {
    status.HTTP_401_UNAUTHORIZED: "Sign in, or send an API key in the X-Api-Key header.",
    status.HTTP_404_NOT_FOUND: "Not found.",
    status.HTTP_429_TOO_MANY_REQUESTS: "Too many requests with a wrong or revoked API key came from this address.",
}


def _no_tile(tilesize: int, fmt: tiles.TileFormat, cache_control: str) -> HttpResponse:
    """The answer when there is nothing to draw: the one place that decides it (see the module docstring)."""
    empty = tiles.empty_tile(tilesize, fmt)
    if empty is None:
        return _error(status.HTTP_404_NOT_FOUND, "This tile is outside the image.")
    response = HttpResponse(empty, content_type=tiles.FORMATS[fmt])
    response["Cache-Control"] = cache_control
    return response


@require_safe
def image_tile(request, image_id: str, cog_version: str, z: str, x: str, y: str, ext: str, scale: str | None = None):
    """One XYZ tile of an image (see ``imagery/tile_urls.py`` for the URL)."""
    z_, x_, y_ = int(z), int(x), int(y)
    fmt = EXTENSIONS[ext]
    tilesize = 512 if scale == "2" else 256
    source = _tile_source(request, image_id, cog_version)
    if isinstance(source, int):
        response = _error(source, _STATUS_MESSAGES[source])
        if source == status.HTTP_429_TOO_MANY_REQUESTS:
            response["Retry-After"] = str(api_key_blocked_for(request) or 1)
        return response
    if not source.cog_version:
        return _error(status.HTTP_404_NOT_FOUND, "This image has no tiles yet: it is still being processed.")
    if source.cog_version != cog_version:
        current = request.path.replace(f"/{cog_version}/", f"/{source.cog_version}/", 1)
        query = request.META.get("QUERY_STRING", "")
        response = HttpResponseRedirect(current + (f"?{query}" if query else ""))
        response["Cache-Control"] = NO_STORE
        return response
    try:
        tiles.check_tile_address(z_, x_, y_)
        bands = parse_bands(request.GET.get("bands"), source.band_count)
        explicit = bands is not None and "rescale" in request.GET
        bands = bands or source.display_bands
        rescale = parse_rescale(request.GET.getlist("rescale"), len(bands)) or source.default_rescale(bands)
        buffer = parse_buffer(request.GET.get("buffer"))
    except tiles.TileNotFound as exc:
        return _error(status.HTTP_404_NOT_FOUND, f"No such tile: {exc}.")
    except BadTileParameters as exc:
        return _error(status.HTTP_400_BAD_REQUEST, str(exc))
    cache_control = IMMUTABLE if explicit else SHORT_LIVED
    data = tiles.render_tile(
        source.gdal_path,
        z_,
        x_,
        y_,
        tilesize=tilesize,
        fmt=fmt,
        bands=bands,
        rescale=rescale,
        nodata=source.nodata,
        env=source.gdal_env,
        version=source.cog_version,
        mercator_bounds=source.mercator_bounds,
        buffer=buffer,
    )
    if data is None:
        return _no_tile(tilesize + 2 * buffer, fmt, cache_control)
    response = HttpResponse(data, content_type=tiles.FORMATS[fmt])
    response["Cache-Control"] = cache_control
    return response


# --------------------------------------------------------------------------------------------------------------
# TileJSON


class ImageTileJSON(APIView):
    """The TileJSON 3.0.0 document a map builds an image's layer from (tile URL template, bounds, zooms)."""

    @extend_schema(
        parameters=[
            OpenApiParameter("tilesize", int, enum=[256, 512], description="Tile size in pixels (512 = @2x tiles)."),
            # Not "format": DRF reads that one to choose the response's renderer.
            OpenApiParameter("tile_format", str, enum=["png", "jpg", "webp"], description="Tile image format."),
            OpenApiParameter("bands", str, description="Bands shown as RGB (or one, grey), e.g. 3,2,1."),
            OpenApiParameter("rescale", str, many=True, description="min,max mapped to 0..255, per band or once."),
            OpenApiParameter(
                "buffer",
                int,
                enum=[0, 1],
                description="Pixels of the neighbouring tiles repeated on each side of every tile (a gutter): "
                "1 lets a map that scales tiles smooth across their edges, with no seams.",
            ),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, image_id):
        image = scoped_to_key(Image.objects.for_user(request.user), request).filter(pk=image_id).first()
        if image is None:
            raise exceptions.NotFound()
        if image.status != Image.Status.READY or not image.cog_version:
            return Response(
                {"detail": f"The image has no tiles yet: its status is {image.status}."},
                status=status.HTTP_409_CONFLICT,
            )
        source = TileSource.from_image(image)
        try:
            tilesize = int(request.query_params.get("tilesize", 256))
            ext = request.query_params.get("tile_format", "png")
            if tilesize not in tiles.TILE_SIZES or ext not in EXTENSIONS:
                raise BadTileParameters("tilesize must be 256 or 512 and tile_format png, jpg or webp.")
            bands = parse_bands(request.query_params.get("bands"), source.band_count) or source.display_bands
            rescale = parse_rescale(request.query_params.getlist("rescale"), len(bands)) or source.default_rescale(
                bands
            )
            buffer = parse_buffer(request.query_params.get("buffer"))
        except (ValueError, BadTileParameters) as exc:
            message = str(exc) if isinstance(exc, BadTileParameters) else "tilesize must be 256 or 512."
            return Response({"detail": message}, status=status.HTTP_400_BAD_REQUEST)
        minzoom, maxzoom = tiles.zoom_range(image.crs, image.bounds, image.width, image.height)
        if image.footprint is not None:
            west, south, east, north = image.footprint.extent
        else:
            west, south, east, north = tiles.geographic_bounds(image.crs, image.bounds)
        url = tile_url_template(
            settings.TILE_BASE_URL,
            image.pk,
            image.cog_version,
            2 if tilesize == 512 else 1,
            "jpg" if ext == "jpeg" else ext,
            tile_query(bands, rescale, buffer),
        )
        return Response(
            {
                "tilejson": "3.0.0",
                "name": image.name,
                "version": image.cog_version,
                "scheme": "xyz",
                "tiles": [url],
                "minzoom": minzoom,
                "maxzoom": maxzoom,
                "bounds": [west, south, east, north],
                "center": [(west + east) / 2, (south + north) / 2, minzoom],
                "tilesize": tilesize,
                "buffer": buffer,
            }
        )
