"""What GDAL may do while it opens a file a user uploaded. Plain functions, no Django.

GDAL can do far more than read pixels: with every driver allowed, a VRT or XML-based upload names other
files (``/etc/passwd``, the secret key, other organizations' COGs) or URLs (``/vsicurl/``, ``http://``), and
most drivers look for sidecar files (``.aux.xml``, ``.ovr``, ``.msk``, world files) beside the one opened. So
an upload is opened only (1) after its first bytes were recognised as one accepted format (``imagery.cog``),
(2) with exactly that one driver allowed, and (3) inside ``upload_gdal_options()``, which closes the rest:
no directory listing (so no sidecar is ever found), no PAM ``.aux.xml`` read or written, and no remote file
but the blob-store path our own code built for this upload.
"""

from __future__ import annotations

#: Accepted formats by GDAL driver short name (the JPEG 2000 one must be bundled with rasterio's GDAL).
GTIFF, JP2, PNG, JPEG = "GTiff", "JP2OpenJPEG", "PNG", "JPEG"

#: Where each driver may take georeferencing from: only from inside the file, never from a sidecar
#: (``PAM`` = ``.aux.xml``, ``WORLDFILE`` = ``.tfw``/``.pgw``/``.wld``, ``TABFILE``, ``XML``). PNG and JPEG
#: carry none of their own, so they are never georeferenced. JPEG 2000 gets no such option: with it, GDAL 3.10
#: returns an uninitialised geotransform for a file without GeoJP2/GMLJP2 boxes; its only sidecar sources
#: (PAM and world files) are closed by ``upload_gdal_options`` anyway. GMLJP2 boxes are read for their CRS and
#: grid only: GDAL resolves their references inside the file's own boxes, and loads the feature collections
#: that may point outside only when a file is opened as vector data, which rasterio never does.
GEOREF_SOURCES = {GTIFF: "INTERNAL", PNG: "NONE", JPEG: "NONE"}

#: Value of CPL_VSIL_CURL_ALLOWED_FILENAME when no remote file may be read at all: no real path looks like it.
NO_REMOTE_FILE = "/vsicurl/no-remote-file-may-be-opened"


def upload_gdal_options(path: str) -> dict[str, str]:
    """GDAL configuration options under which an uploaded file at ``path`` (our own blob-store path) is opened.

    ``path`` is the only file GDAL's network file systems (``/vsicurl/``, ``/vsigs/``, ``/vsis3/``, ...) may
    open: a local blob store allows none, the GCS store allows exactly the upload's ``/vsigs/`` path.
    """
    remote = path if path.startswith("/vsi") else NO_REMOTE_FILE
    return {
        # Behave as if the folder were empty: no sidecar (.aux.xml, .ovr, .msk, .tfw, .pgw, .prj, .imd, ...) is
        # ever found beside the upload, and large folders are not listed.
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
        # Never read or write .aux.xml files (Persistent Auxiliary Metadata).
        "GDAL_PAM_ENABLED": "NO",
        # Network file systems open this one path or nothing.
        "CPL_VSIL_CURL_ALLOWED_FILENAME": remote,
        # Defence in depth for a VRT that should never be opened here anyway.
        "GDAL_VRT_ENABLE_PYTHON": "NO",
        # CRS lookups stay offline (PROJ grids from the network).
        "PROJ_NETWORK": "OFF",
    }


def open_options(driver: str) -> dict[str, str]:
    """Open options (rasterio ``open()`` keyword arguments) for an upload read with ``driver``."""
    return {"GEOREF_SOURCES": GEOREF_SOURCES[driver]} if driver in GEOREF_SOURCES else {}
