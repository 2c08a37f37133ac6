"""Tile URLs, mounted by the web server (`picterra/urls.py`) and by the tile server (`imagery/tile_wsgi.py`).

    /tiles/images/<image id>/<cog_version>/<z>/<x>/<y>@<1|2>x.<png|jpg|webp>[?bands=3,2,1&rescale=0,255&...]

``@1x`` tiles are 256 px, ``@2x`` tiles 512 px over the same extent (the suffix may be left out for 1x).
"""

from __future__ import annotations

from django.urls import re_path

from imagery.tile_views import image_tile

TILE_PATTERN = (
    r"^tiles/images/(?P<image_id>[0-9a-fA-F-]{32,36})/(?P<cog_version>[0-9A-Za-z_-]{1,32})/"
    r"(?P<z>\d{1,2})/(?P<x>\d{1,10})/(?P<y>\d{1,10})(?:@(?P<scale>[12])x)?\.(?P<ext>png|jpg|jpeg|webp)$"
)

urlpatterns = [re_path(TILE_PATTERN, image_tile, name="image-tile")]
