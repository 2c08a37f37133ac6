"""Map tiles: rendered from the ingested COG, permission-checked, cacheable, and served by their own process."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import morecantile
import numpy as np
import pytest
import requests
from django.test import Client
from PIL import Image as PILImage
from pyproj import Transformer
from rio_tiler.io import Reader
from shapely.geometry import Point

from imagery import tiles
from imagery.storage import get_blob_store
from imagery.tile_views import IMMUTABLE, SHORT_LIVED, clear_tile_auth_cache
from picterra.organizations.models import ApiKey
from tests.conftest import REPO, _database_url_for_current_test_db, stop_process

TMS = morecantile.tms.get("WebMercatorQuad")


@pytest.fixture(autouse=True)
def _fresh_tile_auth_cache():
    clear_tile_auth_cache()
    yield
    clear_tile_auth_cache()
    tiles.close_readers()


def tile_path(image, z, x, y, ext="png", scale=1, version=None) -> str:
    return f"/tiles/images/{image.pk}/{version or image.cog_version}/{z}/{x}/{y}@{scale}x.{ext}"


def decode(response) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(response.content)))


def lonlat(sample, x: float, y: float) -> tuple[float, float]:
    return Transformer.from_crs(sample.crs, "EPSG:4326", always_xy=True).transform(x, y)


def tile_and_pixel(lon: float, lat: float, z: int, size: int = 256) -> tuple[morecantile.Tile, int, int]:
    """The tile holding (lon, lat) at zoom z and the point's (column, row) inside it."""
    tile = TMS.tile(lon, lat, z)
    bounds = TMS.xy_bounds(tile)
    mx, my = TMS.xy(lon, lat)
    col = int((mx - bounds.left) / (bounds.right - bounds.left) * size)
    row = int((bounds.top - my) / (bounds.top - bounds.bottom) * size)
    return tile, col, row


def explicit(image, bands=(1, 2, 3)) -> str:
    ranges = "&".join(f"rescale={int(lo)},{int(hi)}" for lo, hi in (image.rescale[b - 1] for b in bands))
    return f"?bands={','.join(map(str, bands))}&{ranges}"


def test_tile_pixels_come_from_the_right_place(tiled_sample, client_for, personas):
    image, sample = tiled_sample
    client = client_for(personas.member)
    tree = max(sample.objects, key=lambda crown: crown.area)
    tree_lonlat = lonlat(sample, *tree.centroid.coords[0])
    # A grass point: away from every crown and from the road (road pixels satisfy |row - 0.35 col - 281.6| < 15.4).
    grass = None
    for col in range(40, 480, 7):
        for row in range(40, 480, 7):
            point = Point(sample.transform @ (col + 0.5, row + 0.5))
            if abs(row - 0.35 * col - 512 * 0.55) > 40 and all(point.distance(c) > 3 for c in sample.objects):
                grass = lonlat(sample, point.x, point.y)
                break
        if grass:
            break

    def pixel_at(lon, lat, z=19):
        tile, col, row = tile_and_pixel(lon, lat, z)
        response = client.get(tile_path(image, tile.z, tile.x, tile.y) + explicit(image))
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "image/png"
        rgba = decode(response)
        assert rgba.shape[:2] == (256, 256)
        window = rgba[max(row - 1, 0) : row + 2, max(col - 1, 0) : col + 2, :3].reshape(-1, 3).astype(float)
        return window.mean(axis=0)

    tree_rgb, grass_rgb = pixel_at(*tree_lonlat), pixel_at(*grass)
    assert tree_rgb.sum() < grass_rgb.sum() - 60  # crowns are dark
    assert tree_rgb[1] / tree_rgb.sum() > grass_rgb[1] / grass_rgb.sum()  # and greener than grass


def test_sizes_and_formats_decode(tiled_sample, client_for, personas):
    image, sample = tiled_sample
    client = client_for(personas.member)
    lon, lat = lonlat(sample, *sample.objects[0].centroid.coords[0])
    tile, _, _ = tile_and_pixel(lon, lat, 18)
    for ext, scale, mime, size in [
        ("png", 1, "image/png", 256),
        ("png", 2, "image/png", 512),
        ("jpg", 1, "image/jpeg", 256),
        ("webp", 2, "image/webp", 512),
    ]:
        response = client.get(tile_path(image, tile.z, tile.x, tile.y, ext=ext, scale=scale))
        assert response.status_code == 200, (ext, response.content)
        assert response["Content-Type"] == mime
        picture = PILImage.open(io.BytesIO(response.content))
        assert picture.size == (size, size) and picture.format == {"jpg": "JPEG"}.get(ext, ext.upper())
    # The @1x suffix may be left out.
    plain = f"/tiles/images/{image.pk}/{image.cog_version}/{tile.z}/{tile.x}/{tile.y}.png"
    assert decode(client.get(plain)).shape[:2] == (256, 256)


def test_edge_tiles_are_transparent_outside_the_data(tiled_sample, client_for, personas):
    image, sample = tiled_sample
    # The tile holding the image's north-west corner at high zoom covers data and emptiness.
    tile, col, row = tile_and_pixel(*lonlat(sample, *(sample.transform @ (0.1, 0.1))), 20)
    rgba = decode(client_for(personas.member).get(tile_path(image, tile.z, tile.x, tile.y) + explicit(image)))
    assert rgba.shape == (256, 256, 4)
    assert rgba[row + 5, col + 5, 3] == 255  # inside: opaque
    assert rgba[max(row - 5, 0), max(col - 5, 0), 3] == 0  # outside: transparent


def test_tiles_outside_the_image_are_empty_and_never_open_the_file(tiled_sample, client_for, personas, monkeypatch):
    image, _ = tiled_sample

    def no_reads(*args, **kwargs):
        raise AssertionError("an outside tile opened the COG")

    monkeypatch.setattr(tiles, "_cached_reader", no_reads)
    client = client_for(personas.member)
    far = TMS.tile(0.0, 0.0, 19)  # Gulf of Guinea
    response = client.get(tile_path(image, far.z, far.x, far.y) + explicit(image))
    assert response.status_code == 200
    assert response["Cache-Control"] == IMMUTABLE
    rgba = decode(response)
    assert rgba.shape[:2] == (256, 256) and rgba[..., -1].max() == 0
    assert response.content == tiles.empty_tile(256, "png")  # built once per process, not per request
    assert len(response.content) < 1000
    webp = client.get(tile_path(image, far.z, far.x, far.y, ext="webp", scale=2))
    assert webp.status_code == 200 and PILImage.open(io.BytesIO(webp.content)).size == (512, 512)
    assert client.get(tile_path(image, far.z, far.x, far.y, ext="jpg")).status_code == 404  # JPEG: no transparency
    # Not a tile of the grid at all.
    assert client.get(tile_path(image, 3, 8, 0)).status_code == 404
    assert client.get(tile_path(image, 25, 0, 0)).status_code == 404


def test_sixteen_bit_images_are_rescaled_and_bands_can_be_chosen(tiled_uint16, client_for, personas):
    image = tiled_uint16
    assert image.dtype == "uint16" and image.band_count == 4
    client = client_for(personas.member)
    tile, col, row = tile_and_pixel(*image.footprint.centroid.coords, 20)
    url = tile_path(image, tile.z, tile.x, tile.y)

    # The stored display rescaling (2nd/98th percentiles) maps 1000..3000 onto 0..255: not all clipped to 255.
    rgb = decode(client.get(url))
    assert rgb.shape == (256, 256, 3)  # all data: encoded without alpha
    values = np.unique(rgb)
    assert values.min() < 30 and values.max() > 225

    # An explicit rescale: 2000 (band 1 = 1000, band 2 = 1100 ... on the left half) maps linearly.
    rgba = decode(client.get(url + "?bands=1,2,3&rescale=0,4000"))
    left = rgba[row, max(col - 20, 0), :3].astype(int)  # the tile's centre is the image's centre: left is 1000+
    right = rgba[row, min(col + 20, 255), :3].astype(int)
    assert np.allclose(left, np.array([1000, 1100, 1200]) * 255 / 4000, atol=1.5)
    assert np.allclose(right, np.array([3000, 3100, 3200]) * 255 / 4000, atol=1.5)

    # Band override: band 4 (9000 everywhere) as grey, or as the red channel.
    grey = decode(client.get(url + "?bands=4&rescale=0,9000"))
    assert grey.shape == (256, 256)  # one band, all data: plain grey
    assert grey[row, col] == 255
    swapped = decode(client.get(url + "?bands=4,2,1&rescale=0,9000&rescale=0,4000&rescale=0,4000"))
    assert swapped[row, max(col - 20, 0), 0] == 255
    assert swapped[row, max(col - 20, 0), 2] == pytest.approx(1000 * 255 / 4000, abs=1.5)

    for bad in ("?bands=5", "?bands=1,2", "?bands=a", "?rescale=10,1", "?bands=1,2,3&rescale=0,1&rescale=0,2"):
        response = client.get(url + bad)
        assert response.status_code == 400, bad
        assert "detail" in response.json()


def test_permissions_session_api_key_and_outsider(tiled_sample, client_for, personas, client):
    image, _ = tiled_sample
    tile = TMS.tile(*image.footprint.centroid.coords, 18)
    url = tile_path(image, tile.z, tile.x, tile.y)
    assert client_for(personas.member).get(url).status_code == 200
    assert client_for(personas.outsider).get(url).status_code == 404
    assert client.get(url).status_code == 401  # no credentials

    _, raw = ApiKey.issue(personas.owner, personas.organization)
    keyed = Client(HTTP_X_API_KEY=raw)
    assert keyed.get(url).status_code == 200
    assert Client(HTTP_X_API_KEY="not-a-key").get(url).status_code == 401
    _, outsider_raw = ApiKey.issue(personas.outsider, personas.outsider_organization)
    assert Client(HTTP_X_API_KEY=outsider_raw).get(url).status_code == 404
    # Other images' ids are as good as absent.
    other = url.replace(str(image.pk), "00000000-0000-0000-0000-000000000000")
    assert client_for(personas.member).get(other).status_code == 404


def test_revocation_reaches_tiles_within_the_cache_time(tiled_sample, personas, settings):
    image, _ = tiled_sample
    tile = TMS.tile(*image.footprint.centroid.coords, 18)
    url = tile_path(image, tile.z, tile.x, tile.y)
    key, raw = ApiKey.issue(personas.owner, personas.organization)
    keyed = Client(HTTP_X_API_KEY=raw)
    settings.TILE_AUTH_CACHE_S = 10
    assert keyed.get(url).status_code == 200
    key.revoked_at = key.created_at
    key.save()
    assert keyed.get(url).status_code == 200  # the process trusts its check for TILE_AUTH_CACHE_S
    settings.TILE_AUTH_CACHE_S = 0
    assert keyed.get(url).status_code == 401


def test_cache_headers_and_versioned_urls(tiled_sample, client_for, personas):
    image, _ = tiled_sample
    client = client_for(personas.member)
    tile = TMS.tile(*image.footprint.centroid.coords, 18)
    url = tile_path(image, tile.z, tile.x, tile.y)
    assert client.get(url + explicit(image))["Cache-Control"] == IMMUTABLE
    # Without bands/rescale the tile follows the image's editable display settings: cached briefly only.
    assert client.get(url)["Cache-Control"] == SHORT_LIVED

    # After a new ingest (new cog_version), an old URL redirects to the current one, uncached.
    old_version = image.cog_version
    image.cog_version = "b" * 16
    image.save(update_fields=["cog_version"])
    clear_tile_auth_cache()  # a tile process trusts its last look at the row for TILE_AUTH_CACHE_S
    stale = client.get(tile_path(image, tile.z, tile.x, tile.y, version=old_version) + "?bands=1,2,3")
    assert stale.status_code == 302 and "no-store" in stale["Cache-Control"]
    assert stale["Location"] == url.replace(old_version, "b" * 16) + "?bands=1,2,3"
    assert client.get(stale["Location"]).status_code == 200

    # An image without a COG (not ready) has no tiles.
    image.status, image.cog_version = image.Status.INGESTING, ""
    image.save(update_fields=["status", "cog_version"])
    clear_tile_auth_cache()
    assert client.get(tile_path(image, tile.z, tile.x, tile.y, version="b" * 16)).status_code == 404


def test_tilejson_describes_the_layer_and_its_url_works(tiled_sample, client_for, personas, settings):
    image, _ = tiled_sample
    settings.TILE_BASE_URL = "http://tiles.example.test:8001"
    client = client_for(personas.member)
    doc = client.get(f"/api/v1/images/{image.pk}/tilejson.json").json()
    assert doc["tilejson"] == "3.0.0" and doc["scheme"] == "xyz" and doc["tilesize"] == 256
    with Reader(get_blob_store().gdal_path(image.cog_key)) as cog:  # the zooms TiTiler would announce
        assert (doc["minzoom"], doc["maxzoom"]) == (cog.minzoom, cog.maxzoom) == (16, 18)
    west, south, east, north = doc["bounds"]
    assert 6.59 < west < east < 6.62 and 46.53 < south < north < 46.56
    lon, lat, zoom = doc["center"]
    assert west < lon < east and south < lat < north and zoom == doc["minzoom"]
    (template,) = doc["tiles"]
    assert template.startswith(f"http://tiles.example.test:8001/tiles/images/{image.pk}/{image.cog_version}/")
    assert "{z}/{x}/{y}@1x.png?bands=1,2,3&rescale=0,255&rescale=0,255&rescale=0,255" in template

    tile = TMS.tile(lon, lat, doc["maxzoom"])
    url = template.format(z=tile.z, x=tile.x, y=tile.y)
    response = client.get(urlsplit(url).path + "?" + urlsplit(url).query)
    assert response.status_code == 200 and response["Cache-Control"] == IMMUTABLE
    assert decode(response).shape == (256, 256, 3)  # fully inside the image: opaque, encoded without alpha

    doc = client.get(f"/api/v1/images/{image.pk}/tilejson.json?tilesize=512&tile_format=webp&bands=3,2,1").json()
    assert doc["tilesize"] == 512 and "@2x.webp?bands=3,2,1&" in doc["tiles"][0]
    assert client.get(f"/api/v1/images/{image.pk}/tilejson.json?tilesize=300").status_code == 400
    assert client_for(personas.outsider).get(f"/api/v1/images/{image.pk}/tilejson.json").status_code == 404
    image.status = image.Status.INGESTING
    image.save(update_fields=["status"])
    assert client.get(f"/api/v1/images/{image.pk}/tilejson.json").status_code == 409


@pytest.mark.urls("imagery.tile_wsgi")
def test_tile_server_urlconf_serves_tiles_and_nothing_else(tiled_sample, personas):
    image, _ = tiled_sample
    _, raw = ApiKey.issue(personas.owner, personas.organization)
    client = Client(HTTP_X_API_KEY=raw)
    tile = TMS.tile(*image.footprint.centroid.coords, 18)
    response = client.get(tile_path(image, tile.z, tile.x, tile.y))
    assert response.status_code == 200 and response.content.startswith(b"\x89PNG")
    assert client.get("/healthz").status_code == 200
    assert client.get("/api/v1/projects/").status_code == 404
    assert client.get(f"/api/v1/images/{image.pk}/tilejson.json").status_code == 404


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tile_server_runs_as_its_own_gunicorn_process(transactional_db, project, personas, tmp_path):
    from imagery.cog import convert_to_cog, display_rescale, inspect_raster
    from imagery.models import Image
    from imagery.sample import write_sample_geotiff

    sample = write_sample_geotiff(tmp_path / "s.tif", size=256, trees=2)
    info = inspect_raster(str(sample.path))
    convert_to_cog(str(sample.path), tmp_path / "cog.tif", info, tmp_path)
    get_blob_store().put_file("images/tileserver/cog.tif", tmp_path / "cog.tif")
    image = Image.objects.create(
        project=project,
        name="s.tif",
        status=Image.Status.READY,
        cog_key="images/tileserver/cog.tif",
        cog_version="v1",
        width=info.width,
        height=info.height,
        band_count=3,
        dtype="uint8",
        crs=info.crs.to_string(),
        bounds=list(info.bounds),
        display_bands=[1, 2, 3],
        rescale=display_rescale(str(tmp_path / "cog.tif"), [1, 2, 3]),
    )
    _, raw = ApiKey.issue(personas.member, personas.organization)
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": _database_url_for_current_test_db()}
    log = (tmp_path / "tiles.log").open("w")
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    process = subprocess.Popen(
        [gunicorn, "imagery.tile_wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--no-control-socket"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, (tmp_path / "tiles.log").read_text()
            try:
                # The first answer waits for the worker to import Django and rio-tiler.
                if requests.get(base + "/healthz", timeout=30).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "tile server did not start"
            time.sleep(0.1)
        lon, lat = Transformer.from_crs(info.crs, "EPSG:4326", always_xy=True).transform(*sample.transform @ (128, 128))
        tile = TMS.tile(lon, lat, 19)
        response = requests.get(base + tile_path(image, tile.z, tile.x, tile.y), headers={"X-Api-Key": raw}, timeout=30)
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        assert requests.get(base + tile_path(image, tile.z, tile.x, tile.y), timeout=10).status_code == 401
        assert requests.get(base + "/api/v1/projects/", headers={"X-Api-Key": raw}, timeout=10).status_code == 404
    finally:
        stop_process(process, timeout=10)
        log.close()
