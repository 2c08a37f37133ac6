"""Hostile uploads: ingest opens only the accepted formats, with one driver, no sidecars and no network.

Most tests call ``imagery.cog`` directly (no Django); the ones named ``test_ingest_*`` go through the real
ingest on the local blob store, to show that nothing of a referenced file ends up in an error or a blob.
"""

from __future__ import annotations

import http.server
import io
import math
import re
import struct
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
from PIL import Image as PILImage
from rasterio.transform import from_origin

from imagery import cog
from imagery.cog import (
    MAX_BANDS,
    MAX_BLOCK_BYTES,
    NONGEO_TRANSFORM,
    RasterRejected,
    convert_to_cog,
    inspect_raster,
)
from imagery.gdal_safety import JP2, upload_gdal_options

SECRET = "s3cr3t-key-that-must-never-leave-the-server"
LEAKS = ("/tmp", "/work", "var/", "/etc", "GDAL", "rasterio", "RasterioIOError", "CPLE", "/vsi", "Details")
#: A server path anywhere in a message: a slash opening a word, or a folder between two slashes.
PATH = re.compile(r"(^|[\s'\"(=:])/|/[\w.-]+/")


def assert_plain(message: str) -> None:
    """A message for the person who uploaded: no server path, no library name, no secret."""
    assert message, "an empty message tells the user nothing"
    for leak in (*LEAKS, SECRET, "root:x:0:0"):
        assert leak not in message, f"{leak!r} leaked into {message!r}"
    assert not PATH.search(message), f"a path leaked into {message!r}"


def rejected(path: Path) -> str:
    with pytest.raises(RasterRejected) as excinfo:
        inspect_raster(str(path))
    message = str(excinfo.value)
    assert_plain(message)
    return message


# ------------------------------------------------------------------------------------------------ file makers


def write_geotiff(path: Path, *, nodata: float | None = None, size: int = 64, **extra) -> Path:
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32632",
        "transform": from_origin(500_000, 5_150_000, 0.5, 0.5),
        "nodata": nodata,
        **extra,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.random.default_rng(0).integers(1, 255, (3, size, size), dtype=np.uint8))
    return path


def write_png(path: Path, height: int = 60, width: int = 90) -> Path:
    PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def raw_vrt(source: str, width: int = 64, height: int = 16) -> str:
    """The attack from the issue: a VRT whose band reads the bytes of ``source`` as pixels."""
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        f"<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{width}</LineOffset>"
        "</VRTRasterBand></VRTDataset>"
    )


def simple_vrt(source: str, width: int = 64, height: int = 64) -> str:
    return (
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">'
        '<VRTRasterBand dataType="Byte" band="1"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )


def crafted_tiff(
    width: int,
    height: int,
    bands: int,
    *,
    bits: int = 8,
    sample_format: int = 1,
    compression: int = 1,
    tile: tuple[int, int] | None = None,
) -> bytes:
    """A little-endian TIFF whose header declares any shape; every strip/tile points at 64 zero bytes.

    Its pixels are nonsense, which is the point: only the header is honest enough to be checked first.
    """
    short, long_ = 3, 4
    entries = [
        (256, long_, [width]),
        (257, long_, [height]),
        (258, short, [bits] * bands),
        (259, short, [compression]),
        (262, short, [1]),
        (277, short, [bands]),
        (284, short, [1]),
        (339, short, [sample_format] * bands),
    ]
    payload = bytes(64)
    if tile:
        count = math.ceil(width / tile[0]) * math.ceil(height / tile[1])
        entries += [(322, long_, [tile[0]]), (323, long_, [tile[1]]), (324, long_, [-1] * count)]
        entries += [(325, long_, [len(payload)] * count)]
    else:
        entries += [(273, long_, [-1]), (278, long_, [height]), (279, long_, [len(payload)])]
    entries.sort()
    sizes = [(2 if kind == short else 4) * len(values) for _, kind, values in entries]
    base = 8 + 2 + 12 * len(entries) + 4
    data_offset = base + sum(size for size in sizes if size > 4)
    ifd, extra = struct.pack("<H", len(entries)), bytearray()
    for (tag, kind, values), size in zip(entries, sizes, strict=True):
        values = [v if v >= 0 else data_offset for v in values]
        raw = struct.pack("<" + ("H" if kind == short else "I") * len(values), *values)
        if size <= 4:
            ifd += struct.pack("<HHI", tag, kind, len(values)) + raw.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, len(values), base + len(extra))
            extra += raw
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0\0\0\0" + bytes(extra) + payload


def _jp2_boxes(data: bytes) -> list[tuple[bytes, bytes]]:
    boxes, at = [], 0
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        header = 8
        if length == 1:
            length, header = struct.unpack(">Q", data[at + 8 : at + 16])[0], 16
        elif length == 0:
            length = len(data) - at
        boxes.append((kind, data[at + header : at + length]))
        at += length
    return boxes


def _jp2_pack(boxes: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(struct.pack(">I4s", 8 + len(payload), kind) + payload for kind, payload in boxes)


def with_gml_box(data: bytes, xml: bytes) -> bytes:
    """``data`` (a JP2 written with a GMLJP2 box) with that box's XML replaced by ``xml``."""

    def walk(boxes: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
        out = []
        for kind, payload in boxes:
            if kind == b"asoc":
                payload = _jp2_pack(walk(_jp2_boxes(payload)))
            elif kind == b"xml " and b"gml:" in payload:
                payload = xml
            out.append((kind, payload))
        return out

    return _jp2_pack(walk(_jp2_boxes(data)))


# ------------------------------------------------------------------------------------------------ HTTP server


class CountingServer:
    """An HTTP server on 127.0.0.1 that records every request it receives (and answers 404)."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        requests = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                requests.append(f"{self.command} {self.path}")
                self.send_response(404)
                self.end_headers()

            do_HEAD = do_GET

            def log_message(self, *args) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def http_server() -> Iterator[CountingServer]:
    server = CountingServer()
    yield server
    server.close()


def test_the_counting_server_does_count(http_server: CountingServer) -> None:
    """Without this, 'zero requests' below could mean a broken server rather than a GDAL that kept quiet."""
    with pytest.raises(rasterio.errors.RasterioIOError):
        rasterio.open(f"/vsicurl/{http_server.url}/probe.tif")
    assert http_server.requests


# ------------------------------------------------------------------------------------------ formats (no Django)


@pytest.fixture
def secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "secret_key"
    path.write_text(SECRET * 40)
    return path


@pytest.mark.parametrize("target", ["/etc/passwd", "SECRET"])
def test_a_vrt_naming_a_server_file_is_refused(tmp_path: Path, secret_file: Path, target: str) -> None:
    source = str(secret_file) if target == "SECRET" else target
    upload = tmp_path / "upload.tif"
    upload.write_text(raw_vrt(source))
    assert "not an image we can read" in rejected(upload)


def test_a_vrt_fetching_a_url_is_refused_without_a_request(tmp_path: Path, http_server: CountingServer) -> None:
    for name, text in {
        "vsicurl.vrt": simple_vrt(f"/vsicurl/{http_server.url}/cog.tif"),
        "http.vrt": simple_vrt(f"{http_server.url}/cog.tif"),
    }.items():
        upload = tmp_path / name
        upload.write_text(text)
        rejected(upload)
    assert http_server.requests == []


def test_upload_options_let_network_file_systems_open_the_upload_path_only(
    tmp_path: Path, http_server: CountingServer
) -> None:
    """Defence in depth: even a driver that tried to read a URL could not, local store or GCS."""
    for own_path in (str(tmp_path / "original.tif"), "/vsigs/bucket/images/1/original/a.tif"):
        with rasterio.Env(**upload_gdal_options(own_path)), pytest.raises(rasterio.errors.RasterioIOError):
            rasterio.open(f"/vsicurl/{http_server.url}/other.tif")
    assert http_server.requests == []


@pytest.mark.parametrize(
    "name,content",
    [
        ("ascii.asc", b"ncols 2\nnrows 2\nxllcorner 0\nyllcorner 0\ncellsize 1\n1 2\n3 4\n"),
        ("mem.tif", b"MEM:::DATAPOINTER=0x1000,PIXELS=100,LINES=100,BANDS=1"),
        ("vsi.tif", b"/vsizip//etc/passwd.zip/x.tif"),
        ("coverage.gml", b'<?xml version="1.0"?><gml:FeatureCollection xmlns:gml="http://www.opengis.net/gml"/>'),
        ("doc.xml", b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>'),
        ("bom.vrt", b"\xef\xbb\xbf<VRTDataset rasterXSize='1' rasterYSize='1'/>"),
        ("empty.tif", b""),
        ("short.tif", b"II"),
    ],
)
def test_other_formats_and_gdal_strings_are_refused(tmp_path: Path, name: str, content: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    assert rejected(path) == cog.NOT_AN_IMAGE


@pytest.mark.parametrize("driver,extension", [("HFA", "img"), ("ENVI", "bin"), ("netCDF", "nc"), ("AAIGrid", "asc")])
def test_formats_gdal_reads_but_we_do_not_accept_are_refused(tmp_path: Path, driver: str, extension: str) -> None:
    path = write_geotiff(tmp_path / "src.tif")
    with rasterio.open(path) as src:
        bands = src.read() if driver != "AAIGrid" else src.read(indexes=[1])
        profile = {**src.profile, "driver": driver, "count": bands.shape[0]}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
    out = tmp_path / f"other.{extension}"
    if driver == "netCDF":  # written by copy only
        with rasterio.open(tmp_path / "mem.tif", "w", **{**profile, "driver": "GTiff"}) as dst:
            dst.write(bands)
        rasterio.shutil.copy(tmp_path / "mem.tif", out, driver=driver)
    else:
        with rasterio.open(out, "w", **profile) as dst:
            dst.write(bands)
    with rasterio.open(out):  # GDAL itself reads it (the test would prove nothing otherwise)
        pass
    rejected(out)
    if driver == "ENVI":  # its header, the sidecar that makes the raw data an image
        rejected(out.with_suffix(".hdr"))


def test_a_zip_holding_a_geotiff_is_refused(tmp_path: Path) -> None:
    inner = write_geotiff(tmp_path / "inner.tif")
    upload = tmp_path / "upload.tif"
    with zipfile.ZipFile(upload, "w") as archive:
        archive.write(inner, "inner.tif")
    rejected(upload)


def test_a_vrt_behind_a_tiff_magic_is_still_read_as_tiff_only(tmp_path: Path, secret_file: Path) -> None:
    """Leading bytes choose the driver, and that driver alone reads: TIFF magic then XML is a broken TIFF."""
    upload = tmp_path / "upload.tif"
    upload.write_bytes(b"II*\0" + raw_vrt(str(secret_file)).encode())
    assert rejected(upload) == cog.NOT_AN_IMAGE


def test_sidecar_metadata_beside_a_geotiff_is_ignored(tmp_path: Path) -> None:
    path = write_geotiff(tmp_path / "ortho.tif", nodata=None)
    sidecar = tmp_path / "ortho.tif.aux.xml"
    sidecar.write_text(
        "<PAMDataset><SRS>EPSG:4326</SRS><GeoTransform>10, 1, 0, 20, 0, -1</GeoTransform>"
        '<PAMRasterBand band="1"><NoDataValue>7</NoDataValue></PAMRasterBand></PAMDataset>'
    )
    before = sidecar.read_text()
    with rasterio.open(path) as plain:  # GDAL on its own would apply it
        assert plain.nodata == 7
    info = inspect_raster(str(path))
    assert info.crs.to_epsg() == 32632 and info.nodata is None
    assert info.transform == from_origin(500_000, 5_150_000, 0.5, 0.5)
    cog_path = tmp_path / "cog.tif"
    convert_to_cog(str(path), cog_path, info, tmp_path)
    with rasterio.open(cog_path) as out:
        assert out.crs.to_epsg() == 32632 and out.nodata is None
    assert sidecar.read_text() == before  # and nothing was written beside the original either


def test_a_world_file_beside_a_png_does_not_georeference_it(tmp_path: Path) -> None:
    path = write_png(tmp_path / "drone.png")
    (tmp_path / "drone.pgw").write_text("2.0\n0.0\n0.0\n-2.0\n600000.0\n5100000.0\n")
    with rasterio.open(path) as plain:  # GDAL on its own would apply it
        assert plain.transform.c == pytest.approx(599_999.0)
    info = inspect_raster(str(path))
    assert not info.is_georeferenced and info.transform == NONGEO_TRANSFORM


def test_a_gmljp2_box_pointing_at_files_and_urls_reads_nothing(
    tmp_path: Path, http_server: CountingServer, secret_file: Path
) -> None:
    if JP2 not in cog._available_drivers():
        pytest.skip("no JPEG 2000 driver in this GDAL")
    written = tmp_path / "written.jp2"
    profile = {"driver": JP2, "width": 64, "height": 64, "count": 1, "dtype": "uint8", "crs": "EPSG:32632"}
    with rasterio.open(written, "w", GMLJP2="YES", GeoJP2="NO", transform=from_origin(500_000, 5e6, 1, 1), **profile):
        pass
    data = written.read_bytes()
    start = data.index(b"<gml:FeatureCollection")
    end = data.rindex(b"</gml:FeatureCollection>") + len(b"</gml:FeatureCollection>")
    xml = data[start:end].replace(b"urn:ogc:def:crs:EPSG::32632", f"{http_server.url}/crs.xml#c".encode())
    xml = xml.replace(
        b"<gml:rangeSet>",
        f'<gml:metaDataProperty xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="{secret_file}"/>'
        f'<gml:metaDataProperty xmlns:xlink="http://www.w3.org/1999/xlink" xlink:href="{http_server.url}/m"/>'
        "<gml:rangeSet>".encode(),
    )
    upload = tmp_path / "upload.jp2"
    upload.write_bytes(with_gml_box(data, xml))
    try:
        info = inspect_raster(str(upload))
    except RasterRejected as exc:
        assert_plain(str(exc))
    else:
        assert SECRET not in repr(info)
    assert http_server.requests == []


# ---------------------------------------------------------------------------------------------- header bombs


@pytest.mark.parametrize(
    "header,words",
    [
        # The 78 KB file: 400 float64 bands (uncompressed, and declared deflate-compressed).
        (dict(width=512, height=512, bands=400, bits=64, sample_format=3), f"at most {MAX_BANDS}"),
        (dict(width=512, height=512, bands=400, bits=64, sample_format=3, compression=8), f"at most {MAX_BANDS}"),
        (dict(width=64, height=64, bands=10_000), f"at most {MAX_BANDS}"),
        (dict(width=1_000_000, height=1_000_000, bands=1), "pixels supported"),
        (dict(width=70_000, height=70_000, bands=3, tile=(65_536, 65_536)), "tiled GeoTIFF"),
        # A 2 GiB compressed tile (GDAL streams compressed single strips, but must inflate a tile whole).
        (
            dict(width=20_000, height=20_000, bands=1, bits=64, sample_format=3, compression=8, tile=(16_384,) * 2),
            "tiled",
        ),
        (dict(width=60_000, height=60_000, bands=1), "not an image we can read"),
        (dict(width=100_000, height=4, bands=32, bits=64, sample_format=3), "not an image we can read"),
    ],
)
def test_headers_declaring_huge_reads_are_refused_before_reading(tmp_path: Path, header: dict, words: str) -> None:
    path = tmp_path / "bomb.tif"
    path.write_bytes(crafted_tiff(**header))
    assert path.stat().st_size < 200_000
    assert words in rejected(path)


def test_block_limit_counts_every_band(tmp_path: Path) -> None:
    """A tile under the limit for one band but over it for all bands together (read together) is refused."""
    side = int(math.sqrt(MAX_BLOCK_BYTES / 16))  # one float64 band: half the limit; four: twice the limit
    path = tmp_path / "tile.tif"
    path.write_bytes(crafted_tiff(side, side, 4, bits=64, sample_format=3, compression=8, tile=(side, side)))
    assert "tiled GeoTIFF" in rejected(path)


def test_a_jpeg2000_upload_is_refused_plainly_where_no_driver_reads_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cog, "_available_drivers", lambda: frozenset({"GTiff", "PNG", "JPEG"}))
    path = tmp_path / "x.jp2"
    path.write_bytes(b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(64))
    assert "JPEG 2000 files cannot be read" in rejected(path)


# ------------------------------------------------------------------------------------------ good files (no Django)


def test_a_non_georeferenced_png_is_placed_pixel_for_pixel_without_a_vrt(tmp_path: Path) -> None:
    """Several 512 px windows and overviews, through the opened dataset rather than an intermediate VRT."""
    path = write_png(tmp_path / "wide.png", height=700, width=1100)
    info = inspect_raster(str(path))
    assert info.driver == "PNG"
    cog_path = tmp_path / "cog.tif"
    convert_to_cog(str(path), cog_path, info, tmp_path)
    assert not list(tmp_path.glob("*.vrt"))
    with rasterio.open(cog_path) as out, rasterio.open(path) as original:
        assert out.crs.to_epsg() == 3857 and out.transform == NONGEO_TRANSFORM
        assert np.array_equal(out.read(), original.read())
        assert out.overviews(1)


# ------------------------------------------------------------------------------------------------- ingest level


def _ingest_bytes(project, content: bytes, filename: str):
    from imagery.ingest import ingest_image
    from imagery.models import Image
    from imagery.storage import get_blob_store, image_original_key

    image = Image.objects.create(project=project, name=filename, status=Image.Status.UPLOADED)
    image.original_key = image_original_key(image.pk, filename)
    get_blob_store().put_stream(image.original_key, io.BytesIO(content))
    image.save(update_fields=["original_key"])
    ingest_image(str(image.pk))
    return Image.objects.get(pk=image.pk)


def _assert_failed_cleanly(image, *needles: str) -> None:
    from imagery.models import Image
    from imagery.storage import get_blob_store

    assert image.status == Image.Status.FAILED
    assert_plain(image.error)
    store = get_blob_store()
    assert list(store.list(f"images/{image.pk}/")) == [image.original_key]  # no COG of what it named
    for key in store.list(""):  # nothing in any blob came from the files it named
        with store.open_read(key) as fh:
            body = fh.read()
        for needle in needles:
            assert needle.encode() not in body or key == image.original_key, key


def test_ingest_of_a_vrt_reading_server_files_fails_and_copies_nothing(project, secret_file: Path) -> None:
    for source in ("/etc/passwd", str(secret_file)):
        image = _ingest_bytes(project, raw_vrt(source).encode(), "upload.tif")
        _assert_failed_cleanly(image, SECRET, "root:x:0:0")
        assert "not an image we can read" in image.error


def test_ingest_of_a_vrt_naming_another_images_cog_fails(project, ingest_file, tmp_path: Path) -> None:
    from imagery.storage import get_blob_store

    other = ingest_file(write_geotiff(tmp_path / "theirs.tif"))
    image = _ingest_bytes(project, simple_vrt(get_blob_store().gdal_path(other.cog_key)).encode(), "mine.tif")
    _assert_failed_cleanly(image)


def test_ingest_of_a_vrt_with_a_url_makes_no_request(project, http_server: CountingServer) -> None:
    image = _ingest_bytes(project, simple_vrt(f"/vsicurl/{http_server.url}/cog.tif").encode(), "upload.tif")
    _assert_failed_cleanly(image)
    assert http_server.requests == []


def test_ingest_ignores_an_aux_xml_placed_beside_the_original(project, tmp_path: Path) -> None:
    from imagery.ingest import ingest_image
    from imagery.models import Image
    from imagery.storage import get_blob_store, image_original_key

    store = get_blob_store()
    content = write_geotiff(tmp_path / "ortho.tif").read_bytes()
    image = Image.objects.create(project=project, name="ortho", status=Image.Status.UPLOADED)
    image.original_key = image_original_key(image.pk, "ortho.tif")
    store.put_stream(image.original_key, io.BytesIO(content))
    sidecar = "<PAMDataset><SRS>EPSG:4326</SRS><PAMRasterBand band='1'><NoDataValue>7</NoDataValue></PAMRasterBand>"
    store.put_stream(image.original_key + ".aux.xml", io.BytesIO((sidecar + "</PAMDataset>").encode()))
    image.save(update_fields=["original_key"])
    assert ingest_image(str(image.pk)) == Image.Status.READY
    image.refresh_from_db()
    assert image.crs == "EPSG:32632" and image.nodata is None


def test_ingest_refuses_the_400_band_header_plainly(project) -> None:
    content = crafted_tiff(512, 512, 400, bits=64, sample_format=3, compression=8)
    image = _ingest_bytes(project, content, "bands.tif")
    _assert_failed_cleanly(image)
    assert "400 bands" in image.error


@pytest.mark.parametrize("kind", ["geotiff", "cog", "png", "jpeg", "jp2", "j2k"])
def test_ingest_still_accepts_every_allowed_format(project, ingest_file, tmp_path: Path, kind: str) -> None:
    if kind in ("jp2", "j2k") and JP2 not in cog._available_drivers():
        pytest.skip("no JPEG 2000 driver in this GDAL")
    if kind == "geotiff":
        path = write_geotiff(tmp_path / "a.tif", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    elif kind == "cog":
        from tests.imagery.conftest import make_cog

        path = make_cog(tmp_path / "a.tif", size=256)
    elif kind == "png":
        path = write_png(tmp_path / "a.png")
    elif kind == "jpeg":
        path = tmp_path / "a.jpg"
        PILImage.fromarray(np.full((40, 50, 3), 120, dtype=np.uint8)).save(path, quality=95)
    else:
        path = tmp_path / f"a.{kind}"
        options = {"CODEC": "J2K"} if kind == "j2k" else {}
        crs = {} if kind == "j2k" else {"crs": "EPSG:32632", "transform": from_origin(500_000, 5e6, 1, 1)}
        with rasterio.open(path, "w", driver=JP2, width=64, height=48, count=3, dtype="uint8", **crs, **options) as d:
            d.write(np.random.default_rng(3).integers(0, 255, (3, 48, 64), dtype=np.uint8))
    image = ingest_file(path, name=path.name)
    assert image.band_count == 3
    assert image.is_georeferenced == (kind in ("geotiff", "cog", "jp2"))
    from imagery.storage import get_blob_store

    with rasterio.open(get_blob_store().gdal_path(image.cog_key)) as out, rasterio.open(path) as original:
        assert np.array_equal(out.read(), original.read())  # the pixels GDAL decodes, unchanged
        if image.is_georeferenced:
            assert out.crs == original.crs and out.transform == original.transform
