"""PostgreSQL bulk loads: set a filled table's foreign keys, unique constraints and secondary
indexes aside for the load and re-create each from its catalog definition afterwards.

Re-adding a foreign key validates it with one set-based join instead of one deferred trigger call
per row at commit (8M of them at 1M subscriptions), and building an index once is much cheaper than
maintaining it row by row. Definitions are read from the catalog (``pg_get_constraintdef`` /
``pg_get_indexdef``) before dropping, so they come back with the same names and definitions; a
violation raises and the whole seed rolls back (DDL is transactional in PostgreSQL, so the
constraints are back as well).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# Foreign keys and unique/exclusion constraints of one table, and its indexes that no constraint owns.
# Kept: primary keys (foreign keys depend on them), indexes a foreign key relies on, invalid indexes
# (re-creating one would make it valid) and check/not-null constraints (cheap per row).
_TABLE_CONSTRAINTS_SQL = """
SELECT con.conname, con.contype, pg_get_constraintdef(con.oid),
       CASE WHEN con.contype = 'f' THEN con.confrelid::regclass::text END
FROM pg_constraint con
WHERE con.conrelid = %s::regclass
  AND (con.contype = 'f'
       OR (con.contype IN ('u', 'x')
           AND NOT EXISTS (SELECT 1 FROM pg_constraint fk WHERE fk.contype = 'f' AND fk.conindid = con.conindid)))
ORDER BY con.contype = 'f', con.conname
"""
_TABLE_INDEXES_SQL = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND i.indisvalid AND i.indisready
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)
ORDER BY ic.relname
"""
# For the load only: index builds and foreign-key validation sort and hash in memory.
_BULK_SETTINGS = {"maintenance_work_mem": "256MB", "work_mem": "256MB"}


@dataclass
class _Dropped:
    """What was dropped from one table for the load, as the catalog defined it."""

    table: str
    constraints: list[tuple[str, str, str, str | None]]  # name, kind, definition, referenced table
    indexes: list[tuple[str, str]]  # name, CREATE INDEX statement
    rebuilt: bool = False


class ConstraintsAside:
    """Drops, then re-creates, the constraints and indexes of the tables a load fills.

    `submit` runs a statement after everything submitted before it (the writer's COPY queue), so
    re-creation overlaps with the generation of later tables.
    """

    # Do it for a table only when it pays: re-creating costs a pass over the whole table, maintaining
    # costs a step per inserted row. Rows inserted must be at least this share of the rows present.
    MIN_RATIO = 1.0

    def __init__(self, connection, submit: Callable[[str], None]) -> None:
        self.connection = connection
        self.qn = connection.ops.quote_name
        self.submit = submit
        self._dropped: dict[str, _Dropped] = {}
        self._fks_added: set[tuple[str, str]] = set()
        self._restore_settings: dict[str, str] = {}

    def begin(self, planned: dict[str, int]) -> list[str]:
        """Drop what loading `planned` rows per table makes worth re-creating; return those tables."""
        qn = self.qn
        with self.connection.cursor() as cursor:
            for table, rows in planned.items():
                if not rows:
                    continue
                cursor.execute(f"SELECT COUNT(*) FROM {qn(table)}")
                if rows < self.MIN_RATIO * cursor.fetchone()[0]:
                    continue
                cursor.execute(_TABLE_CONSTRAINTS_SQL, [qn(table)])
                constraints = cursor.fetchall()
                cursor.execute(_TABLE_INDEXES_SQL, [qn(table)])
                # the definitions are read before anything of this table is dropped
                self._dropped[table] = _Dropped(table, constraints, cursor.fetchall())
            if not self._dropped:
                return []
            for dropped in self._dropped.values():
                for name, _kind, _definition, _parent in reversed(dropped.constraints):  # foreign keys first
                    cursor.execute(f"ALTER TABLE {qn(dropped.table)} DROP CONSTRAINT {qn(name)}")
                for name, _definition in dropped.indexes:
                    cursor.execute(f"DROP INDEX {qn(name)}")
            for setting, value in _BULK_SETTINGS.items():  # until end() (local to the transaction)
                cursor.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [setting, setting, value])
                self._restore_settings[setting] = cursor.fetchone()[0]
        return list(self._dropped)

    def table_done(self, table: str) -> None:
        """`table` has all its rows: re-create its indexes now, and the foreign keys whose two tables
        are complete."""
        dropped = self._dropped.get(table)
        if dropped is None or dropped.rebuilt:
            return
        dropped.rebuilt = True
        qn = self.qn
        for _name, definition in dropped.indexes:
            self.submit(definition)
        for name, kind, definition, _parent in dropped.constraints:
            if kind != "f":
                self.submit(f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {definition}")
        self.submit(f"ANALYZE {qn(table)}")  # fresh statistics for the validation that follows
        self._add_foreign_keys(final=False)

    def _add_foreign_keys(self, *, final: bool) -> None:
        complete = lambda t: t not in self._dropped or self._dropped[t].rebuilt  # noqa: E731
        for dropped in self._dropped.values():
            for name, kind, definition, parent in dropped.constraints:
                if kind != "f" or (dropped.table, name) in self._fks_added:
                    continue
                if final or (complete(dropped.table) and complete(parent.split(".")[-1].strip('"'))):
                    self._fks_added.add((dropped.table, name))
                    self.submit(f"ALTER TABLE {self.qn(dropped.table)} ADD CONSTRAINT {self.qn(name)} {definition}")

    def end(self, sync: Callable[[], None]) -> None:
        """Re-create whatever is still missing, wait for it (`sync`), and restore the settings."""
        for table in self._dropped:
            self.table_done(table)
        self._add_foreign_keys(final=True)
        sync()
        if self._restore_settings:
            with self.connection.cursor() as cursor:
                for setting, value in self._restore_settings.items():
                    cursor.execute("SELECT set_config(%s, %s, true)", [setting, value])
        self._restore_settings = {}
