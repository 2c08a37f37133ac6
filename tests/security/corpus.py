"""The hostile-input corpus, generated in code: crafted rasters, driver tricks, header bombs, odd names.

Nothing binary is committed: every file is built here from a few bytes of structure, so a reader sees exactly
what each one claims to be. Items that name something of the server (organization B's COG on disk, a local
HTTP port) are built from a `Target` the test fills in at run time.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

# --- building blocks ---------------------------------------------------------------------------------------------

SHORT, LONG, DOUBLE = 3, 4, 12
_TYPE_SIZE = {SHORT: 2, LONG: 4, DOUBLE: 8}
_TYPE_CODE = {SHORT: "H", LONG: "I", DOUBLE: "d"}

# EPSG:32632 (UTM 32N) near Lausanne, the same place as the platform's sample rasters.
UTM32N_WKT_NAME = "EPSG:32632"


def tiff(
    width: int,
    height: int,
    bands: int = 1,
    bits: int = 8,
    sample_format: int = 1,
    compression: int = 1,
    strip: bytes = b"",
    rows_per_strip: int | None = None,
    declared_strip_bytes: int | None = None,
) -> bytes:
    """A classic little-endian TIFF whose header says what we want, whatever the data that follows.

    Every strip points at the same ``strip`` bytes (deflate-compressed zeros make a tiny file that declares a
    huge one); ``declared_strip_bytes`` lets a strip claim more bytes than the file has (truncated data).
    """
    rows_per_strip = rows_per_strip or height
    strips = math.ceil(height / rows_per_strip)
    entries: list[tuple[int, int, list]] = [
        (256, LONG, [width]),
        (257, LONG, [height]),
        (258, SHORT, [bits] * bands),
        (259, SHORT, [compression]),
        (262, SHORT, [1]),  # min-is-black
        (273, LONG, [0] * strips),  # strip offsets: filled in below
        (277, SHORT, [bands]),
        (278, LONG, [rows_per_strip]),
        (279, LONG, [declared_strip_bytes if declared_strip_bytes is not None else len(strip)] * strips),
        (284, SHORT, [1]),  # chunky
        (339, SHORT, [sample_format] * bands),
    ]
    data_offset = 8
    arrays_offset = data_offset + len(strip) + (len(strip) % 2)
    entries[5] = (273, LONG, [data_offset] * strips)
    arrays = bytearray()
    ifd_entries = []
    for tag, kind, values in entries:
        size = _TYPE_SIZE[kind] * len(values)
        packed = struct.pack(f"<{len(values)}{_TYPE_CODE[kind]}", *values)
        if size <= 4:
            ifd_entries.append(struct.pack("<HHI", tag, kind, len(values)) + packed.ljust(4, b"\0"))
        else:
            offset = arrays_offset + len(arrays)
            arrays += packed + (b"\0" if len(packed) % 2 else b"")
            ifd_entries.append(struct.pack("<HHII", tag, kind, len(values), offset))
    ifd_offset = arrays_offset + len(arrays)
    header = b"II*\0" + struct.pack("<I", ifd_offset)
    ifd = struct.pack("<H", len(ifd_entries)) + b"".join(ifd_entries) + struct.pack("<I", 0)
    return header + strip + (b"\0" if len(strip) % 2 else b"") + bytes(arrays) + ifd


def png(width: int = 8, height: int = 8) -> bytes:
    """A valid RGB PNG (a small gradient), for the tests about names rather than contents."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(
        b"\0" + bytes(v for x in range(width) for v in (x * 30 % 256, y * 30 % 256, 128)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def vrt(bands_xml: str, width: int = 64, height: int = 64, georeferenced: bool = True) -> bytes:
    geo = (
        f"<SRS>{UTM32N_WKT_NAME}</SRS><GeoTransform>500000, 0.3, 0, 5150000, 0, -0.3</GeoTransform>"
        if georeferenced
        else ""
    )
    return f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">{geo}{bands_xml}</VRTDataset>'.encode()


def vrt_raw(path: str, width: int = 64, height: int = 64) -> bytes:
    """A VRT whose band is the raw bytes of ``path`` (how /etc/passwd became a "ready" image)."""
    band = (
        '<VRTRasterBand dataType="Byte" band="1" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativetoVRT="0">{path}</SourceFilename>'
        f"<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>{width}</LineOffset>"
        "</VRTRasterBand>"
    )
    return vrt(band, width, height)


def vrt_source(path: str, width: int = 64, height: int = 64, bands: int = 1) -> bytes:
    """A VRT whose bands are read from another raster ``path`` (a local file, /vsicurl/, http://...)."""
    xml = "".join(
        f'<VRTRasterBand dataType="Byte" band="{b}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="0">{path}</SourceFilename><SourceBand>{b}</SourceBand>'
        f'<SrcRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
        f'<DstRect xOff="0" yOff="0" xSize="{width}" ySize="{height}"/>'
        "</SimpleSource></VRTRasterBand>"
        for b in range(1, bands + 1)
    )
    return vrt(xml, width, height)


def multipart(fields: dict[str, str], file_field: str, filename: bytes, content: bytes) -> tuple[bytes, str]:
    """A multipart/form-data body written byte for byte, so a file name can carry NUL or any byte at all
    (HTTP client libraries escape them)."""
    boundary = "----hostile-corpus-boundary-7d1f"
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="'.encode()
        + filename
        + b'"\r\nContent-Type: application/octet-stream\r\n\r\n'
        + content
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# --- the upload corpus -------------------------------------------------------------------------------------------


@dataclass
class Target:
    """What some items aim at, known only once the server and organization B exist."""

    b_cog_path: str  # organization B's COG, as a path on the server's disk
    b_cog_key: str  # ... and as a blob key
    b_width: int
    b_height: int
    b_bands: int
    trap_url: str  # a local HTTP server that counts the requests it gets (it must get none)
    secret_key_path: str  # var/secret_key of the embedded server


@dataclass
class UploadItem:
    id: str
    filename: bytes  # as sent: may hold any byte
    build: Callable[[Target], bytes]
    # "rejected": must end as a 4xx or a `failed` image; "harmless": a valid file behind a hostile name, may be
    # accepted, but never stored outside its own image folder.
    expect: str = "rejected"
    why: str = ""


def _zeros_row(width: int, bands: int, bytes_per_sample: int) -> bytes:
    return zlib.compress(bytes(width * bands * bytes_per_sample), 9)


UPLOADS: list[UploadItem] = [
    UploadItem(
        "vrt-raw-etc-passwd", b"ortho.tif", lambda t: vrt_raw("/etc/passwd"), why="server file read through a VRT"
    ),
    UploadItem(
        "vrt-source-etc-passwd", b"ortho.vrt", lambda t: vrt_source("/etc/passwd"), why="server file as a raster source"
    ),
    UploadItem(
        "vrt-raw-secret-key",
        b"ortho.tif",
        lambda t: vrt_raw(t.secret_key_path, width=16, height=4),
        why="the signing secret through a VRT",
    ),
    UploadItem(
        "vrt-other-org-cog",
        b"ortho.tif",
        lambda t: vrt_source(t.b_cog_path, t.b_width, t.b_height, t.b_bands),
        why="organization B's pixels through a VRT naming its COG on disk",
    ),
    UploadItem(
        "vrt-other-org-blob-relative",
        b"ortho.tif",
        lambda t: vrt_source("../../" + t.b_cog_key.split("/", 1)[1], t.b_width, t.b_height, t.b_bands).replace(
            b'relativeToVRT="0"', b'relativeToVRT="1"'
        ),
        why="organization B's COG by a path relative to the upload's own folder",
    ),
    UploadItem(
        "vrt-vsicurl-ssrf",
        b"ortho.tif",
        lambda t: vrt_source(f"/vsicurl/{t.trap_url}/b.tif"),
        why="server-side request forgery through /vsicurl/",
    ),
    UploadItem(
        "vrt-http-ssrf", b"ortho.tif", lambda t: vrt_source(f"{t.trap_url}/c.tif"), why="a plain http:// source"
    ),
    UploadItem(
        "gdal-wms-ssrf",
        b"ortho.xml",
        lambda t: (
            '<GDAL_WMS><Service name="TMS"><ServerUrl>' + t.trap_url + "/${z}/${x}/${y}.png</ServerUrl></Service>"
            "<DataWindow><UpperLeftX>-20037508.34</UpperLeftX><UpperLeftY>20037508.34</UpperLeftY>"
            "<LowerRightX>20037508.34</LowerRightX><LowerRightY>-20037508.34</LowerRightY>"
            "<TileLevel>2</TileLevel><TileCountX>1</TileCountX><TileCountY>1</TileCountY>"
            "<YOrigin>top</YOrigin></DataWindow><Projection>EPSG:3857</Projection>"
            "<BlockSizeX>256</BlockSizeX><BlockSizeY>256</BlockSizeY><BandsCount>3</BandsCount></GDAL_WMS>"
        ).encode(),
        why="a GDAL WMS description that fetches tiles from a URL",
    ),
    UploadItem(
        "gdal-mem-string",
        b"MEM:::DATAPOINTER=0x1000,PIXELS=100,LINES=100,BANDS=1,DATATYPE=Byte",
        lambda t: b"MEM:::DATAPOINTER=0x1000,PIXELS=100,LINES=100,BANDS=1,DATATYPE=Byte",
        why="GDAL's in-memory dataset string, as the name and as the content",
    ),
    UploadItem(
        "xml-gml",
        b"parcels.gml",
        lambda t: (
            b'<?xml version="1.0"?><ogr:FeatureCollection xmlns:ogr="http://ogr.maptools.org/" '
            b'xmlns:gml="http://www.opengis.net/gml"><gml:featureMember><ogr:x><ogr:geometryProperty>'
            b"<gml:Point><gml:coordinates>6.6,46.5</gml:coordinates></gml:Point></ogr:geometryProperty>"
            b"</ogr:x></gml:featureMember></ogr:FeatureCollection>"
        ),
        why="an XML-based vector format",
    ),
    UploadItem(
        "envi-header",
        b"scene.hdr",
        lambda t: (
            b"ENVI\ndescription = {hostile}\nsamples = 100000\nlines = 100000\nbands = 10000\n"
            b"header offset = 0\nfile type = ENVI Standard\ndata type = 5\ninterleave = bsq\nbyte order = 0\n"
        ),
        why="a multi-file format's header declaring 10^14 float64 values",
    ),
    UploadItem(
        "hfa-header",
        b"scene.img",
        lambda t: b"EHFA_HEADER_TAG\0" + struct.pack("<I", 20) + struct.pack("<IIII", 1, 0xFFFFFFFF, 0, 0) + bytes(64),
        why="an Erdas Imagine header pointing past the end of the file",
    ),
    UploadItem(
        "tiff-10000-bands",
        b"bands.tif",
        lambda t: tiff(64, 64, bands=10_000, strip=b"\0" * 64),
        why="a header declaring 10,000 bands",
    ),
    UploadItem(
        "tiff-400-float64-bands-small-file",
        b"float.tif",
        lambda t: tiff(
            2048,
            2048,
            bands=400,
            bits=64,
            sample_format=3,
            compression=8,
            rows_per_strip=1,
            strip=_zeros_row(2048, 400, 8),
        ),
        why="400 float64 bands of 2048 x 2048 (13 GB decoded) in a file under 80 KB",
    ),
    UploadItem(
        "tiff-million-by-million",
        b"huge.tif",
        lambda t: tiff(1_000_000, 1_000_000, compression=8, strip=zlib.compress(bytes(1_000_000), 9)),
        why="a header claiming 1,000,000 x 1,000,000 pixels",
    ),
    UploadItem("zero-bytes", b"empty.tif", lambda t: b"", why="an empty file"),
    UploadItem(
        "truncated-tiff",
        b"cut.tif",
        lambda t: tiff(512, 512, bands=3, strip=bytes(4096), declared_strip_bytes=512 * 512 * 3),
        why="strips that end long before their declared size",
    ),
    # Valid pixels behind hostile names: acceptable, but the name must never steer where bytes are stored.
    UploadItem(
        "png-symlink-looking-name",
        b"/proc/self/cwd/var/secret_key.png",
        lambda t: png(),
        expect="harmless",
        why="a name shaped like a path through /proc",
    ),
    UploadItem("png-dotdot-name", b"../../etc/passwd", lambda t: png(), expect="harmless", why="path traversal"),
    UploadItem("png-nul-name", b"photo\0.png", lambda t: png(), expect="harmless", why="a NUL byte in the name"),
    UploadItem("png-10kb-name", b"a" * 10_240 + b".png", lambda t: png(), expect="harmless", why="a 10 KB name"),
    UploadItem(
        "png-rtl-override-name",
        "invoice\u202egnp.exe".encode(),
        lambda t: png(),
        expect="harmless",
        why="a unicode right-to-left override hiding the real extension",
    ),
]


def upload_ids() -> list[str]:
    return [item.id for item in UPLOADS]


# --- request bodies ----------------------------------------------------------------------------------------------


def ring(lon: float, lat: float, points: int, radius: float = 0.001) -> list[list[float]]:
    coords = [
        [lon + radius * math.cos(2 * math.pi * i / points), lat + radius * math.sin(2 * math.pi * i / points)]
        for i in range(points)
    ]
    return coords + [coords[0]]


def square(lon: float, lat: float, size: float = 0.001) -> dict:
    return {
        "type": "Polygon",
        "coordinates": [[[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]],
    }


GEOMETRY_BOMBS = [
    "million-vertices", "deeply-nested", "self-intersecting-ring", "unclosed-ring", "huge-coordinates", "nan-infinity",
]  # fmt: skip


def geometry_bomb(name: str, lon: float, lat: float) -> str:
    """The raw JSON text of a hostile GeoJSON Polygon near (lon, lat)."""
    import json

    if name == "million-vertices":
        return json.dumps({"type": "Polygon", "coordinates": [ring(lon, lat, 1_000_000)]})
    if name == "deeply-nested":
        return '{"type": "Polygon", "coordinates": ' + "[" * 100_000 + "]" * 100_000 + "}"
    if name == "self-intersecting-ring":
        bowtie = [[lon, lat], [lon + 0.001, lat + 0.001], [lon + 0.001, lat], [lon, lat + 0.001], [lon, lat]]
        return json.dumps({"type": "Polygon", "coordinates": [bowtie]})
    if name == "unclosed-ring":
        open_ring = [[lon, lat], [lon + 0.001, lat], [lon + 0.001, lat + 0.001], [lon, lat + 0.001]]
        return json.dumps({"type": "Polygon", "coordinates": [open_ring]})
    if name == "huge-coordinates":
        huge = [[1e308, 1e308], [-1e308, 1e308], [-1e308, -1e308], [1e308, 1e308]]
        return json.dumps({"type": "Polygon", "coordinates": [huge]})
    if name == "nan-infinity":
        return '{"type": "Polygon", "coordinates": [[[NaN, 1], [Infinity, 2], [-Infinity, 3], [NaN, 1]]]}'
    raise KeyError(name)


AREA_BOMBS = [*GEOMETRY_BOMBS, "50mb-body"]


def area_body(name: str, fields: dict, lon: float, lat: float) -> bytes:
    """A raw `POST areas/` body: the valid ``fields`` plus a hostile geometry (or 50 MB of padding)."""
    import json

    head = json.dumps(fields)[:-1]
    if name == "50mb-body":
        padding = "x" * (50 * 1024 * 1024)
        return (head + f', "geometry": {json.dumps(square(lon, lat))}, "padding": "{padding}"}}').encode()
    return (head + f', "geometry": {geometry_bomb(name, lon, lat)}}}').encode()


def feature_collection(geometry_json: str) -> bytes:
    """A GeoJSON file around one raw geometry (for the public API's file uploads)."""
    head = '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {}, "geometry": '
    return (head + geometry_json + "}]}").encode()


BAD_IDS = {
    "not-a-uuid": "not-a-uuid",
    "overlong": "0" * 4000,
    "encoded-traversal": "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "nul": "%00",
    "sql-ish": "1%27%20OR%20%271%27%3D%271",
    "uuid-with-suffix": "00000000-0000-0000-0000-000000000000%00.json",
}

# Class names shaped like the platform's own references and like spreadsheet formulas.
HOSTILE_CLASS_NAMES = {
    "blob-reference-to-other-org": lambda b_cog_key: "blob:" + b_cog_key,
    "dotdot": lambda b_cog_key: "../../" + b_cog_key,
    "csv-formula": lambda b_cog_key: "=cmd|' /C calc'!A0",
    "csv-formula-after-spaces": lambda b_cog_key: "  @SUM(1+1)*cmd|' /C calc'!A0",  # spreadsheets skip the spaces
}

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")


def runs_as_formula(cell: str) -> bool:
    """Whether a spreadsheet would evaluate this CSV cell (leading spaces do not stop it)."""
    return cell.startswith(FORMULA_PREFIXES) or cell.lstrip(" \t\r\n").startswith(FORMULA_PREFIXES[:4])
