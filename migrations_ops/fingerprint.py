"""Content checksums of tables: has a table's content changed, whatever the row order?

Each row is hashed on its own and the hashes are added modulo 2**256: a multiset hash, so no
sort is needed and the result does not depend on the order the engine returns rows in.
"""

from __future__ import annotations

import hashlib

from django.db import DEFAULT_DB_ALIAS, connections

_MOD = 2**256
_FETCH = 5000


def table_checksum(table: str, using: str = DEFAULT_DB_ALIAS) -> str:
    """A checksum of every row of ``table`` (all columns), independent of row order."""
    connection = connections[using]
    total = 0
    count = 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
        while rows := cursor.fetchmany(_FETCH):
            for row in rows:
                digest = hashlib.sha256(repr(tuple(_normal(v) for v in row)).encode()).digest()
                total = (total + int.from_bytes(digest, "big")) % _MOD
                count += 1
    return f"{count}:{total:064x}"


def table_checksums(tables: list[str] | None = None, using: str = DEFAULT_DB_ALIAS) -> dict[str, str]:
    """Checksums of the given tables (default: every table of the database)."""
    connection = connections[using]
    if tables is None:
        with connection.cursor() as cursor:
            tables = sorted(connection.introspection.table_names(cursor))
    return {table: table_checksum(table, using) for table in tables}


def _normal(value):
    # memoryview/bytes and str compare by content; everything else by its repr.
    if isinstance(value, memoryview):
        return bytes(value)
    return value
