"""Every difference between database engines lives behind :class:`DatabaseEngine`."""

from __future__ import annotations

from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops.engines.base import DatabaseEngine
from migrations_ops.errors import BadInput


def get_engine(using: str = DEFAULT_DB_ALIAS) -> DatabaseEngine:
    """The engine implementation for connection ``using``, chosen by ``connection.vendor``."""
    from migrations_ops.engines.postgresql import PostgreSQLEngine
    from migrations_ops.engines.sqlite import SQLiteEngine

    connection = connections[using]
    implementations: dict[str, type[DatabaseEngine]] = {"postgresql": PostgreSQLEngine, "sqlite": SQLiteEngine}
    try:
        implementation = implementations[connection.vendor]
    except KeyError:
        raise BadInput(
            f"unsupported database engine {connection.vendor!r}: migrations_ops supports PostgreSQL and SQLite"
        ) from None
    return implementation(connection)


__all__ = ["DatabaseEngine", "get_engine"]
