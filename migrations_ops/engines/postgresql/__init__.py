"""PostgreSQL: pg_dump / pg_restore / psql, advisory locks, catalog introspection.

:class:`PostgreSQLEngine` is the whole interface of ``engines/base.py``, one group of methods per
module, each a small class on :class:`~.sessions.Connections` (the database's name, its libpq
parameters, and ``side_connection``, the one way to open a connection beside Django's):

- ``tools.py``          the client tools: found, their versions, their environment (passwords in
                        PGPASSWORD, never in argv), and ``start``/``run``, the one way to run them;
- ``sessions.py``       side connections, hardened sessions, lock timeouts, cancelling, error kinds,
                        other sessions, the advisory migration lock;
- ``introspection.py``  catalog reads: tables, special relations, write counters, sizes and settings;
- ``databases.py``      scratch copies and restore targets beside this database;
- ``dumps.py``          the backup formats, dump, and reading a dump file back;
- ``restore.py``        the all-or-nothing restore (one psql transaction with a guard);
- ``online.py``         the online primitives and replica lag.

A part calls another only through the engine interface (``self.server_version()``,
``self.table_names()``...) or through a module-level name it imports; nothing here imports a module
above the engines.
"""

from __future__ import annotations

from pathlib import Path

from migrations_ops.engines.base import check_free_space
from migrations_ops.engines.postgresql.databases import Databases
from migrations_ops.engines.postgresql.dumps import (
    CUSTOM_MAGIC,
    FORMAT_CUSTOM,
    FORMAT_PLAIN,
    FORMAT_ZSTD,
    PLAIN_HEADER,
    PLAIN_TRAILER,
    SUFFIXES,
    ZSTD_LEVEL,
    Dumps,
)
from migrations_ops.engines.postgresql.introspection import Introspection
from migrations_ops.engines.postgresql.online import Online
from migrations_ops.engines.postgresql.restore import Restore
from migrations_ops.engines.postgresql.sessions import LOCK_APP_PREFIX, LOCK_KEY, Sessions
from migrations_ops.errors import BadInput


class PostgreSQLEngine(Introspection, Dumps, Restore, Sessions, Databases, Online):
    vendor = "postgresql"

    def check_ready_for_migration(self, backup_dir: Path, dump: bool = True) -> None:
        if dump:
            self.check_dump_tools()
        missing = self.missing_privileges()
        if missing:
            raise BadInput("the database role lacks privileges: " + ", ".join(missing))
        if dump:  # a pgBackRest point writes a few hundred bytes here
            check_free_space(Path(backup_dir), 2 * self.database_size())


__all__ = [
    "CUSTOM_MAGIC",
    "FORMAT_CUSTOM",
    "FORMAT_PLAIN",
    "FORMAT_ZSTD",
    "LOCK_APP_PREFIX",
    "LOCK_KEY",
    "PLAIN_HEADER",
    "PLAIN_TRAILER",
    "SUFFIXES",
    "ZSTD_LEVEL",
    "PostgreSQLEngine",
]
