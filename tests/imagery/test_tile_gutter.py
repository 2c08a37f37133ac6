"""Tiles with a gutter (`buffer=1`): each tile repeats one pixel of its neighbours on every side, so a map that
scales tiles smooths across their edges (the browser test `test_image_tiles_meet_without_seams_at_any_zoom`
shows the seams this removes). Its interior is the plain tile; its rim is the neighbours' edge pixels."""

from __future__ import annotations

from urllib.parse import urlsplit

import numpy as np
import pytest

from imagery import tiles
from imagery.tile_views import clear_tile_auth_cache
from tests.imagery.test_tiles import TMS, decode, explicit, tile_path


@pytest.fixture(autouse=True)
def _fresh_tile_auth_cache():
    clear_tile_auth_cache()
    yield
    clear_tile_auth_cache()
    tiles.close_readers()


def test_a_gutter_tile_is_the_tile_framed_by_its_neighbours_pixels(tiled_sample, client_for, personas):
    image, _ = tiled_sample
    client = client_for(personas.member)
    x0, y0, x1, y1 = image.footprint.extent
    middle = TMS.tile((x0 + x1) / 2, (y0 + y1) / 2, 19)  # well inside the image: its neighbours hold data too

    def get(x: int, y: int, buffer: str = "", scale: int = 1) -> np.ndarray:
        query = explicit(image) + (f"&buffer={buffer}" if buffer else "")
        response = client.get(tile_path(image, middle.z, x, y, scale=scale) + query)
        assert response.status_code == 200, response.content
        return decode(response)[:, :, :3].astype(int)

    framed = get(middle.x, middle.y, "1")
    assert framed.shape[:2] == (258, 258)
    assert np.array_equal(framed[1:-1, 1:-1], get(middle.x, middle.y))
    assert np.array_equal(framed[1:-1, -1], get(middle.x + 1, middle.y)[:, 0])  # the east neighbour's first column
    assert np.array_equal(framed[1:-1, 0], get(middle.x - 1, middle.y)[:, -1])  # the west neighbour's last column
    assert np.array_equal(framed[-1, 1:-1], get(middle.x, middle.y + 1)[0, :])  # the south neighbour's top row
    assert get(middle.x, middle.y, "1", scale=2).shape[:2] == (514, 514)
    assert np.array_equal(get(middle.x, middle.y, "0"), get(middle.x, middle.y))


def test_gutter_tiles_outside_the_image_are_empty_at_their_size_and_bad_buffers_are_plain_400s(
    tiled_sample, client_for, personas
):
    image, _ = tiled_sample
    client = client_for(personas.member)
    x0, _, _, y1 = image.footprint.extent
    corner = TMS.tile(x0, y1, 19)
    outside = client.get(tile_path(image, 19, corner.x - 3, corner.y - 3) + explicit(image) + "&buffer=1")
    assert outside.status_code == 200 and decode(outside).shape[:2] == (258, 258) and not decode(outside).any()
    for bad in ("2", "-1", "x", "0.5"):
        response = client.get(tile_path(image, 19, corner.x, corner.y) + explicit(image) + f"&buffer={bad}")
        assert response.status_code == 400
        assert response.json()["detail"] == "buffer: give 0 or 1 (pixels of the neighbouring tiles around each tile)."
    response = client.get(f"/api/v1/images/{image.pk}/tilejson.json?buffer=7")
    assert response.status_code == 400 and "buffer" in response.json()["detail"]


def test_tilejson_with_a_gutter_says_so_and_its_urls_carry_it(tiled_sample, client_for, personas):
    image, _ = tiled_sample
    client = client_for(personas.member)
    plain = client.get(f"/api/v1/images/{image.pk}/tilejson.json").json()
    assert plain["buffer"] == 0 and "buffer" not in plain["tiles"][0]
    doc = client.get(f"/api/v1/images/{image.pk}/tilejson.json?buffer=1").json()
    assert doc["buffer"] == 1 and doc["tiles"][0].endswith("&buffer=1")
    tile = TMS.tile(*doc["center"][:2], doc["maxzoom"])
    url = doc["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y)
    response = client.get(urlsplit(url).path + "?" + urlsplit(url).query)
    assert response.status_code == 200 and decode(response).shape[:2] == (258, 258)
