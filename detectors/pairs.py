"""Change detectors' image pairs: the check when a pair is chosen, and the source the ML core reads.

A pair is a first image (its grid is what is read and where shapes are drawn) and a second image of the same
place at another date. The ML core (``workers.ml.raster_io``) reads it as one raster and refuses, in plain
words (``ImagePairError``), two images that cannot be compared; the same check runs here on the two COGs'
headers when the user chooses the pair, so they are told at once rather than when training fails.
"""

from __future__ import annotations

import logging

import rasterio
from rasterio.errors import RasterioError

from imagery.models import Image
from imagery.storage import get_blob_store
from workers.ml.raster_io import ImagePairError, ImagePairSource, check_pair

logger = logging.getLogger(__name__)


def pair_source(first: Image, second: Image) -> ImagePairSource:
    """What the ML core opens (``raster_io.open_image``) to read the pair on the first image's grid."""
    store = get_blob_store()
    return ImagePairSource(store.gdal_path(first.cog_key), store.gdal_path(second.cog_key))


def check_image_pair(first: Image, second: Image) -> None:
    """Raise ``ImagePairError`` (plain words) when ``second`` cannot be compared with ``first``.

    Images still being processed have no COG yet: they are checked when the pair is read (training and
    detection fail with the same message), so only the same-image mistake is refused before that.
    """
    if first.pk == second.pk:
        raise ImagePairError(
            "Choose another image for the second date: a change detector compares two images of the same place "
            "taken at different times."
        )
    if first.status != Image.Status.READY or second.status != Image.Status.READY:
        return
    store = get_blob_store()
    try:
        with (
            rasterio.Env(**store.gdal_env()),
            rasterio.open(store.gdal_path(first.cog_key)) as before,
            rasterio.open(store.gdal_path(second.cog_key)) as after,
        ):
            check_pair(before, after)
    except RasterioError:
        # Unreadable here (a store hiccup): not the user's mistake; reading the pair later checks it again.
        logger.warning("could not read the headers of images %s and %s to check them", first.pk, second.pk)
