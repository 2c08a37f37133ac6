"""Upload → COG → metadata, through the API and the ingest pipeline, on the local blob store."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from django.db import connection
from django.urls import reverse
from PIL import Image as PILImage
from rasterio.enums import Compression
from rio_cogeo.cogeo import cog_validate

from imagery.cog import NOT_AN_IMAGE
from imagery.ingest import ingest_image
from imagery.models import Image
from imagery.purge import purge_pending_blobs
from imagery.sample import write_sample_geotiff
from imagery.storage import get_blob_store

PLAIN_NOT_AN_IMAGE = "This file is not an image we can read (accepted: GeoTIFF, JPEG 2000, PNG, JPEG)"
assert NOT_AN_IMAGE == PLAIN_NOT_AN_IMAGE


def upload(client, project, path: Path, name: str | None = None):
    with path.open("rb") as fh:
        payload = {"project": str(project.pk), "file": fh}
        if name:
            payload["name"] = name
        return client.post(reverse("v1:image-list"), payload, format="multipart")


def test_upload_then_ingest_makes_a_valid_cog_with_metadata(personas, project, client_for, tmp_path):
    sample = write_sample_geotiff(tmp_path / "field.tif", size=600, trees=5)
    response = upload(client_for(personas.member), project, sample.path)
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "uploaded"
    image_id = response.json()["id"]

    assert ingest_image(image_id) == Image.Status.READY
    image = Image.objects.get(pk=image_id)
    assert (image.width, image.height, image.band_count, image.dtype) == (600, 600, 3, "uint8")
    assert image.crs == "EPSG:32632" and image.gsd == pytest.approx(0.3)
    assert image.display_bands == [1, 2, 3] and image.rescale == [[0, 255]] * 3
    store = get_blob_store()
    cog_path = store.gdal_path(image.cog_key)
    assert cog_validate(cog_path, quiet=True)[0]
    with rasterio.open(cog_path) as cog, rasterio.open(sample.path) as original:
        assert cog.block_shapes[0] == (512, 512)
        assert cog.compression == Compression.zstd  # decompresses about twice as fast as deflate
        assert np.array_equal(cog.read(), original.read())  # lossless
    # Footprint: the image's UTM square, in lon/lat near Lausanne.
    lon, lat = image.footprint.centroid.coords
    assert 6.6 < lon < 6.7 and 46.5 < lat < 46.6
    assert image.footprint.area > 0

    # Ingest is idempotent: a second delivery of the same job changes nothing.
    assert ingest_image(image_id) == Image.Status.READY


def test_not_a_raster_fails_with_a_readable_reason(personas, project, client_for, tmp_path):
    bogus = tmp_path / "notes.tif"
    bogus.write_text("these are my field notes, not an image\n" * 50)
    response = upload(client_for(personas.owner), project, bogus)
    assert response.status_code == 201
    assert ingest_image(response.json()["id"]) == Image.Status.FAILED
    image = Image.objects.get(pk=response.json()["id"])
    assert image.error == PLAIN_NOT_AN_IMAGE
    assert not list(get_blob_store().list(f"images/{image.pk}/cog"))


def test_truncated_geotiff_fails_and_leaves_no_cog(personas, project, client_for, tmp_path):
    sample = write_sample_geotiff(tmp_path / "whole.tif", size=512, trees=3)
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(sample.path.read_bytes()[: sample.path.stat().st_size // 2])
    response = upload(client_for(personas.owner), project, truncated)
    assert ingest_image(response.json()["id"]) == Image.Status.FAILED
    image = Image.objects.get(pk=response.json()["id"])
    assert image.error == PLAIN_NOT_AN_IMAGE
    assert not list(get_blob_store().list(f"images/{image.pk}/cog"))


def assert_no_jargon(message: str) -> None:
    """Nothing of the server (paths) or of the libraries (names, error classes) in a user's message."""
    assert "/" not in message and "\\" not in message, message
    for word in ("GDAL", "rasterio", "Rasterio", "CPLE", "TIFFRead", "Error", "vsi", "blob"):
        assert word not in message, (word, message)


@pytest.mark.parametrize(
    "name,content",
    [
        ("notes.txt", b"these are my field notes, not an image\n" * 50),
        ("notes.tif", b"just text with a tif name\n" * 50),
        # TIFF magic, then nothing GDAL can parse: GDAL's own error names the file's path on the server.
        ("garbage.tif", b"II*\x00" + b"\xff" * 4000),
        ("garbage.jpg", b"\xff\xd8\xff" + b"\x00" * 4000),
        ("garbage.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 4000),
        ("one-byte.tif", b"I"),
    ],
)
def test_every_unreadable_upload_gets_the_one_plain_message(personas, project, client_for, tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    response = upload(client_for(personas.owner), project, path)
    assert response.status_code == 201, response.json()
    assert ingest_image(response.json()["id"]) == Image.Status.FAILED
    error = Image.objects.get(pk=response.json()["id"]).error
    assert error == "This file is not an image we can read (accepted: GeoTIFF, JPEG 2000, PNG, JPEG)"
    assert_no_jargon(error)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
@pytest.mark.parametrize("compress", [None, "deflate"])
def test_a_truncated_geotiff_gets_the_plain_message(personas, project, client_for, tmp_path, fraction, compress):
    whole = tmp_path / "whole.tif"
    profile = {"driver": "GTiff", "width": 600, "height": 600, "count": 3, "dtype": "uint8", "crs": "EPSG:32632"}
    profile["transform"] = rasterio.transform.from_origin(500_000, 5_150_000, 0.5, 0.5)
    if compress:
        profile.update(compress=compress, tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(whole, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 600, 600), dtype=np.uint8))
    truncated = tmp_path / "truncated.tif"
    truncated.write_bytes(whole.read_bytes()[: int(whole.stat().st_size * fraction)])
    response = upload(client_for(personas.owner), project, truncated)
    assert ingest_image(response.json()["id"]) == Image.Status.FAILED
    error = Image.objects.get(pk=response.json()["id"]).error
    assert error == PLAIN_NOT_AN_IMAGE
    assert_no_jargon(error)


def test_an_unexpected_error_in_ingest_shows_no_path_or_library_name(
    personas, project, client_for, tmp_path, monkeypatch
):
    from imagery import ingest

    def broken(src_path, *args, **kwargs):
        raise RuntimeError(f"CPLE_AppDefinedError: GDAL could not write {src_path}: /var/lib/blobs is full")

    monkeypatch.setattr(ingest, "convert_to_cog", broken)
    sample = write_sample_geotiff(tmp_path / "field.tif", size=128, trees=1)
    response = upload(client_for(personas.owner), project, sample.path)
    with pytest.raises(RuntimeError):  # the worker's log gets the error itself
        ingest_image(response.json()["id"])
    image = Image.objects.get(pk=response.json()["id"])
    assert image.status == Image.Status.FAILED
    assert image.error == "Processing this file failed unexpectedly. Try uploading it again."
    assert_no_jargon(image.error)


def test_georeferenced_but_crs_less_geotiff_is_refused(personas, project, client_for, tmp_path):
    path = tmp_path / "nocrs.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=64,
        count=1,
        dtype="uint8",
        transform=rasterio.Affine(1, 0, 1000, 0, -1, 2000),
    ) as dst:
        dst.write(np.zeros((1, 64, 64), dtype=np.uint8))
    response = upload(client_for(personas.owner), project, path)
    assert ingest_image(response.json()["id"]) == Image.Status.FAILED
    assert "no coordinate reference system" in Image.objects.get(pk=response.json()["id"]).error


def test_png_without_georeferencing_is_placed_by_the_public_api_convention(personas, project, client_for, tmp_path):
    path = tmp_path / "drone.png"
    PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (120, 200, 3), dtype=np.uint8)).save(path)
    response = upload(client_for(personas.owner), project, path)
    assert ingest_image(response.json()["id"]) == Image.Status.READY
    image = Image.objects.get(pk=response.json()["id"])
    assert not image.is_georeferenced
    assert image.crs == "EPSG:3857"
    assert image.bounds == pytest.approx([0.0, -12.0, 20.0, 0.0])
    with rasterio.open(get_blob_store().gdal_path(image.cog_key)) as cog:
        assert cog.transform.to_gdal() == pytest.approx((0, 0.1, 0, 0, 0, -0.1))


def test_sixteen_bit_image_gets_a_percentile_rescale(personas, project, client_for, tmp_path):
    path = tmp_path / "sixteen.tif"
    data = np.random.default_rng(2).integers(1000, 3000, (4, 128, 128), dtype=np.uint16)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=128,
        height=128,
        count=4,
        dtype="uint16",
        nodata=0,
        crs="EPSG:32632",
        transform=rasterio.Affine(0.5, 0, 316000, 0, -0.5, 5158000),
    ) as dst:
        dst.write(data)
    response = upload(client_for(personas.owner), project, path)
    assert ingest_image(response.json()["id"]) == Image.Status.READY
    image = Image.objects.get(pk=response.json()["id"])
    assert image.band_count == 4 and image.dtype == "uint16" and image.nodata == 0
    assert len(image.rescale) == 4
    for low, high in image.rescale:
        assert 1000 <= low < 1200 and 2800 < high <= 3000


def test_deleting_an_image_removes_its_blobs(
    personas, project, client_for, tmp_path, django_capture_on_commit_callbacks
):
    sample = write_sample_geotiff(tmp_path / "a.tif", size=128, trees=1)
    client = client_for(personas.owner)
    image_id = upload(client, project, sample.path).json()["id"]
    ingest_image(image_id)
    store = get_blob_store()
    assert store.exists(Image.objects.get(pk=image_id).cog_key)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(reverse("v1:image-detail", args=[image_id])).status_code == 204
    purge_pending_blobs()  # what the queued workers.tasks.purge_blobs runs (tests/imagery/test_storage_lifecycle.py)
    assert not list(store.list(f"images/{image_id}/"))
    assert not list(store.list(f"images/{image_id}/"))


def test_upload_refuses_an_empty_file_and_others_projects(personas, project, client_for, tmp_path):
    empty = tmp_path / "empty.tif"
    empty.write_bytes(b"")
    response = upload(client_for(personas.owner), project, empty)
    assert response.status_code == 400
    assert "empty" in response.json()["detail"]
    sample = write_sample_geotiff(tmp_path / "x.tif", size=64, trees=0)
    response = upload(client_for(personas.outsider), project, sample.path)
    assert response.status_code == 400
    assert not Image.objects.exists()


def test_ingest_interrupted_by_a_crash_is_redone_cleanly(personas, project, client_for, tmp_path):
    sample = write_sample_geotiff(tmp_path / "crash.tif", size=200, trees=2)
    image_id = upload(client_for(personas.owner), project, sample.path).json()["id"]
    # A worker died mid-ingest: the row says ingesting and a stray COG may be there.
    Image.objects.filter(pk=image_id).update(status=Image.Status.INGESTING)
    get_blob_store().put_stream(f"images/{image_id}/cog-crashed.tif", io.BytesIO(b"half a COG"))
    assert ingest_image(image_id) == Image.Status.READY
    image = Image.objects.get(pk=image_id)
    assert cog_validate(get_blob_store().gdal_path(image.cog_key), quiet=True)[0]
    assert list(get_blob_store().list(f"images/{image_id}/cog")) == [image.cog_key]  # the stray one is gone


@pytest.mark.django_db(transaction=True)
def test_two_deliveries_of_the_same_ingest_at_once_leave_one_good_cog(personas, project, client_for, tmp_path):
    sample = write_sample_geotiff(tmp_path / "twice.tif", size=400, trees=3)
    image_id = upload(client_for(personas.owner), project, sample.path).json()["id"]

    def attempt():
        try:
            return ingest_image(image_id)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda _: attempt(), range(2)))
    assert results.count(Image.Status.READY) == 2
    image = Image.objects.get(pk=image_id)
    assert list(get_blob_store().list(f"images/{image_id}/cog")) == [image.cog_key]
    assert cog_validate(get_blob_store().gdal_path(image.cog_key), quiet=True)[0]


def test_display_settings_are_editable_and_checked(personas, project, client_for, tmp_path):
    sample = write_sample_geotiff(tmp_path / "bands.tif", size=64, trees=0)
    client = client_for(personas.member)
    image_id = upload(client, project, sample.path).json()["id"]
    ingest_image(image_id)
    url = reverse("v1:image-detail", args=[image_id])
    ok = client.patch(url, {"display_bands": [3, 2, 1], "rescale": [[10, 200], [0, 255], [5, 250]]}, format="json")
    assert ok.status_code == 200
    assert ok.json()["display_bands"] == [3, 2, 1] and ok.json()["rescale"][0] == [10, 200]
    bad_band = client.patch(url, {"display_bands": [1, 2, 9]}, format="json")
    assert bad_band.status_code == 400 and "between 1 and 3" in bad_band.json()["detail"]
    bad_range = client.patch(url, {"rescale": [[10, 5], [0, 1], [0, 1]]}, format="json")
    assert bad_range.status_code == 400 and "min < max" in bad_range.json()["detail"]
    assert client.patch(url, {"width": 5}, format="json").json()["width"] == 64  # read-only
