"""SQLite: the online backup API, flock'ed lock files, PRAGMA checks."""

from __future__ import annotations

from migrations_ops.engines.base import DatabaseEngine


class SQLiteEngine(DatabaseEngine):
    vendor = "sqlite"
