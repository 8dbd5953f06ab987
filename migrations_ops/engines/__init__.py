"""Every difference between database engines lives behind :class:`DatabaseEngine`."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops.engines.base import DatabaseEngine
from migrations_ops.engines.postgresql import PostgreSQLEngine
from migrations_ops.engines.sqlite import SQLiteEngine
from migrations_ops.errors import BadInput

# Every supported engine, by Django's connection.vendor: the one place that lists them.
ENGINES: dict[str, type[DatabaseEngine]] = {"postgresql": PostgreSQLEngine, "sqlite": SQLiteEngine}


def engine_class(vendor: str) -> type[DatabaseEngine]:
    """The engine implementation for a vendor name (``postgresql`` or ``sqlite``); BadInput otherwise."""
    try:
        return ENGINES[vendor]
    except KeyError:
        raise BadInput(
            f"unsupported database engine {vendor!r}: migrations_ops supports PostgreSQL and SQLite"
        ) from None


def get_engine(using: str = DEFAULT_DB_ALIAS) -> DatabaseEngine:
    """The engine implementation for connection ``using``, chosen by ``connection.vendor``."""
    connection = connections[using]
    return engine_class(connection.vendor)(connection)


__all__ = ["ENGINES", "DatabaseEngine", "engine_class", "get_engine"]
