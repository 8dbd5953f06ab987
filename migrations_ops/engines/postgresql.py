"""PostgreSQL: pg_dump / pg_restore / psql, advisory locks, catalog introspection."""

from __future__ import annotations

from migrations_ops.engines.base import DatabaseEngine


class PostgreSQLEngine(DatabaseEngine):
    vendor = "postgresql"
