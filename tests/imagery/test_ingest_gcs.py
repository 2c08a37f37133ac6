"""The same upload → COG path with the blob store on Google Cloud Storage (the real client, an emulator)."""

from __future__ import annotations

import io
from urllib.parse import urlsplit

import morecantile
import numpy as np
import pytest
import rasterio
from django.urls import reverse
from PIL import Image as PILImage
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from imagery.blobstore import GCSBlobStore
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.purge import purge_pending_blobs
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store


@pytest.fixture
def gcs_platform_store(settings, gcs_store_url):
    settings.BLOBSTORE_URL = gcs_store_url
    get_blob_store.cache_clear()
    yield get_blob_store()
    get_blob_store.cache_clear()


def test_upload_and_ingest_with_the_gcs_blob_store(
    gcs_platform_store, personas, project, client_for, tmp_path, django_capture_on_commit_callbacks
):
    assert isinstance(gcs_platform_store, GCSBlobStore)
    sample = write_sample_geotiff(tmp_path / "gcs.tif", size=700, trees=4)
    client = client_for(personas.owner)
    with sample.path.open("rb") as fh:
        response = client.post(reverse("v1:image-list"), {"project": str(project.pk), "file": fh}, format="multipart")
    assert response.status_code == 201
    image_id = response.json()["id"]
    assert gcs_platform_store.exists(Image.objects.get(pk=image_id).original_key)

    assert ingest_image(image_id) == Image.Status.READY
    image = Image.objects.get(pk=image_id)
    assert image.width == 700 and image.crs == "EPSG:32632"
    path = gcs_platform_store.gdal_path(image.cog_key)
    assert path.startswith("/vsigs/")
    with rasterio.Env(**gcs_platform_store.gdal_env()):
        assert cog_validate(path, quiet=True)[0]
        with rasterio.open(path) as cog, rasterio.open(sample.path) as original:
            window = Window(300, 200, 256, 256)
            assert np.array_equal(cog.read(window=window), original.read(window=window))

    # Map tiles read the COG straight from GCS too.
    doc = client.get(f"/api/v1/images/{image_id}/tilejson.json").json()
    lon, lat, _ = doc["center"]
    tile = morecantile.tms.get("WebMercatorQuad").tile(lon, lat, doc["maxzoom"])
    url = urlsplit(doc["tiles"][0].format(z=tile.z, x=tile.x, y=tile.y))
    response = client.get(f"{url.path}?{url.query}")
    assert response.status_code == 200 and response["Content-Type"] == "image/png"
    tile_pixels = np.asarray(PILImage.open(io.BytesIO(response.content)))
    assert tile_pixels.shape[:2] == (256, 256) and tile_pixels[..., :3].std() > 5  # real imagery, not empty

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(reverse("v1:image-detail", args=[image_id])).status_code == 204
    assert list(gcs_platform_store.list(f"images/{image_id}/")), "the delete purges later, in a job"
    purge_pending_blobs()  # what the queued purge_blobs job does
    assert list(gcs_platform_store.list(f"images/{image_id}/")) == []
