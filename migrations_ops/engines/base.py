"""The engine interface: what migrations_ops needs from a database, whatever the vendor.

An engine knows nothing of commands, output formatting or the domain.
"""

from __future__ import annotations

from django.db.backends.base.base import BaseDatabaseWrapper


class DatabaseEngine:
    """Base class; subclasses implement the vendor-specific parts."""

    vendor: str = ""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    # --- introspection shared by backups (manifest) and validation (`tables` map) ---
    def table_names(self) -> list[str]:
        """Application tables (every table of the database's application schema), sorted."""
        with self.connection.cursor() as cursor:
            return sorted(self.connection.introspection.table_names(cursor))

    def row_counts(self) -> dict[str, int]:
        """Exact row count of every table, in one round trip."""
        names = self.table_names()
        if not names:
            return {}
        qn = self.connection.ops.quote_name
        sql = " UNION ALL ".join(f"SELECT {i}, COUNT(*) FROM {qn(name)}" for i, name in enumerate(names))
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            counts = dict(cursor.fetchall())
        return {name: int(counts[i]) for i, name in enumerate(names)}
