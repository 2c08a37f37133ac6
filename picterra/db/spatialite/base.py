"""SpatiaLite backend for the embedded default database.

Two workarounds, both for Debian bookworm:

- SpatiaLite is *not* loaded with SQLite's ``load_extension``. SQLite dlopens extensions with
  ``RTLD_GLOBAL``, which puts mod_spatialite's dependencies (the system PROJ 9.1, GEOS 3.11, ...) in the
  process's global symbol scope. From then on, every symbol that the wheels' bundled copies (rasterio's
  GDAL/PROJ, shapely's GEOS, pyproj's PROJ) resolve lazily binds to the *system* library instead of their
  own: shapely ran on two GEOS versions at once and rasterio's GDAL called the system PROJ with contexts
  of its own PROJ. Processes crashed with SIGSEGV (``manage.py migrate`` about once in tens of runs, when
  the database check happened to run before the URL check imported rio-tiler). Instead, mod_spatialite is
  dlopened ``RTLD_LOCAL`` and initialised on our connections through ``sqlite3_auto_extension`` of the
  SQLite library the stdlib ``sqlite3`` module uses. The auto-extension is a filter: it initialises only
  the connection this thread opens for Django, never other users of the system SQLite (the system PROJ
  opens proj.db through it, also from inside SpatiaLite's own initialisation: initialising those too
  deadlocks on PROJ's database mutex). This also makes extension loading unnecessary (pyenv's CPython is
  built without it).
- SpatiaLite 5.0.1's ``InitSpatialMetaData()`` creates ISO metadata triggers that break Django's
  migrations (Django ticket #32935), so the metadata is created with ``InitSpatialMetaData(1)`` instead.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sqlite3
import threading

from django.conf import settings
from django.contrib.gis.db.backends.spatialite.base import (
    DatabaseWrapper as SpatiaLiteDatabaseWrapper,
)
from django.core.exceptions import ImproperlyConfigured
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper

_lock = threading.Lock()
_opening = threading.local()  # set while this thread opens a connection for Django
_keep_alive: list[object] = []  # the libraries and the callback must outlive every connection

_EntryPoint = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def _load_spatialite() -> ctypes.CDLL:
    candidates = [getattr(settings, "SPATIALITE_LIBRARY_PATH", None), "mod_spatialite.so"]
    candidates.append(ctypes.util.find_library("spatialite"))
    for name in filter(None, candidates):
        try:
            return ctypes.CDLL(name, mode=os.RTLD_LOCAL)
        except OSError:
            continue
    tried = ", ".join(filter(None, candidates))
    raise ImproperlyConfigured(f"SpatiaLite: mod_spatialite was not found (tried {tried}); install it.")


def register_spatialite_auto_extension() -> None:
    """Once per process: let `connect_with_spatialite` initialise SpatiaLite without polluting symbols."""
    with _lock:
        if _keep_alive:
            return
        sqlite_path = ctypes.util.find_library("sqlite3")
        if sqlite_path is None:
            raise ImproperlyConfigured("SpatiaLite: the SQLite library (libsqlite3) was not found.")
        spatialite = _load_spatialite()
        init = spatialite.sqlite3_modspatialite_init
        init.restype = ctypes.c_int
        init.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]

        def entry_point(db: int, error: int, api: int) -> int:
            if not getattr(_opening, "active", False):
                return 0  # not a Django connection (e.g. PROJ opening proj.db): leave it alone
            _opening.active = False  # connections opened while initialising are not ours either
            return init(db, error, api)

        callback = _EntryPoint(entry_point)
        libsqlite = ctypes.CDLL(sqlite_path, mode=os.RTLD_LOCAL)
        if libsqlite.sqlite3_auto_extension(ctypes.cast(callback, ctypes.c_void_p)) != 0:
            raise ImproperlyConfigured("SpatiaLite: sqlite3_auto_extension refused mod_spatialite.")
        _keep_alive.extend([spatialite, libsqlite, callback])
    probe = connect_with_spatialite(lambda: sqlite3.connect(":memory:"))
    try:
        probe.execute("SELECT spatialite_version()")
    except sqlite3.OperationalError as error:
        raise ImproperlyConfigured(
            f"SpatiaLite: Python's sqlite3 module does not use {sqlite_path}, the SQLite library "
            "mod_spatialite was registered with; use a Python linked against the system SQLite."
        ) from error
    finally:
        probe.close()


def connect_with_spatialite(connect):
    """Run `connect` (which opens one SQLite connection) so that the connection gets SpatiaLite."""
    register_spatialite_auto_extension()
    _opening.active = True
    try:
        return connect()
    finally:
        _opening.active = False


class DatabaseWrapper(SpatiaLiteDatabaseWrapper):
    def get_new_connection(self, conn_params):
        return connect_with_spatialite(lambda: SQLiteDatabaseWrapper.get_new_connection(self, conn_params))

    def prepare_database(self) -> None:
        SQLiteDatabaseWrapper.prepare_database(self)
        with self.cursor() as cursor:
            cursor.execute("PRAGMA table_info(geometry_columns);")
            if cursor.fetchall() == []:
                cursor.execute("SELECT InitSpatialMetaData(1)")
