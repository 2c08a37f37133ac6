"""SpatiaLite backend for the embedded default database.

Two workarounds, both for Debian bookworm with a pyenv-built CPython:
- that CPython's sqlite3 cannot load extensions, so pysqlite3 (which can) is swapped in before Django's
  SQLite backend imports the module. It must be built against the system libsqlite3 (setup installs
  libsqlite3-dev; pip builds it), never the pysqlite3-binary wheel: mod_spatialite calls a few sqlite3_*
  functions of the system library directly (sqlite3_rtree_query_callback), and handing those a connection
  of the wheel's own, newer SQLite corrupts memory: migrate crashed with SIGSEGV about once in tens of runs;
- SpatiaLite 5.0.1's `InitSpatialMetaData()` creates ISO metadata triggers that break Django's
  migrations (Django ticket #32935), so the metadata is created with `InitSpatialMetaData(1)` instead.
"""

import sqlite3
import sys

if not hasattr(sqlite3.connect(":memory:"), "enable_load_extension"):
    import pysqlite3
    import pysqlite3.dbapi2

    sys.modules["sqlite3"] = pysqlite3
    sys.modules["sqlite3.dbapi2"] = pysqlite3.dbapi2

from django.contrib.gis.db.backends.spatialite.base import (  # noqa: E402
    DatabaseWrapper as SpatiaLiteDatabaseWrapper,
)
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper  # noqa: E402


class DatabaseWrapper(SpatiaLiteDatabaseWrapper):
    def prepare_database(self) -> None:
        SQLiteDatabaseWrapper.prepare_database(self)
        with self.cursor() as cursor:
            cursor.execute("PRAGMA table_info(geometry_columns);")
            if cursor.fetchall() == []:
                cursor.execute("SELECT InitSpatialMetaData(1)")
