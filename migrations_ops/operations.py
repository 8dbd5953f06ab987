"""Migration operations for data changes that can run online (see migrations_ops/online/).

:class:`RunSQLBatched` is one set-based statement (or a few) with a ``{batch}`` placeholder for a
key-range predicate. On the transactional path (``migrate``, ``safe_migrate``, SQLite) the
placeholder is ``TRUE`` and the whole change is one statement; on ``safe_migrate --online`` it
walks the key in batches, each in its own short transaction with a checkpoint, so the application
never waits for more than one batch. :class:`BoundedRunPython` declares that a RunPython touches
a small, fixed number of rows whatever the size of the tables (so one short transaction is fine).
:class:`PostgreSQLOnlySQL` is a RunSQL for PostgreSQL-only DDL (exclusion constraints, database
defaults on a jsonb column), a no-op on every other engine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from django.db import migrations
from django.db.migrations.operations.base import Operation

from migrations_ops.dialect import for_vendor

SQLText = str | Mapping[str, str]  # one statement, or one per database vendor


def _statements(sql: SQLText | Sequence[SQLText] | None) -> tuple[SQLText, ...]:
    if sql is None:
        return ()
    if isinstance(sql, str | Mapping):
        return (sql,)
    return tuple(sql)


@dataclass(frozen=True)
class BatchKey:
    """The table a batched change walks, and the name the SQL gives it (``alias``, e.g. "u").

    The walk is physical: ranges of the table's pages (``ctid``, a TID range scan), so a batch
    reads its pages once whatever the key type (random UUID keys would touch a page per row).
    """

    table: str
    alias: str | None = None

    @property
    def ctid(self) -> str:
        return f"{self.alias}.ctid" if self.alias else f'"{self.table}".ctid'


class RunSQLBatched(Operation):
    """Set-based SQL that runs as one statement, or online in key-range batches; reversible.

    ``sql`` and ``reverse_sql``: a statement or a list of statements, each a string or a
    ``{vendor: string}`` mapping, containing ``{batch}`` where the batch predicate belongs (a
    literal ``%`` is written ``%%``). ``key`` / ``reverse_key``: the :class:`BatchKey` each
    direction walks (None: one short statement, for changes whose size does not grow with the
    tables). Statements must touch only rows that still need the change (``WHERE total_cost IS
    NULL``, ``NOT EXISTS (...)``): after the walk they run once more over the whole table, in one
    transaction, for rows the application moved behind the walk meanwhile.
    """

    reduces_to_sql = True
    atomic = True

    def __init__(
        self,
        sql: SQLText | Sequence[SQLText],
        reverse_sql: SQLText | Sequence[SQLText] | None = None,
        *,
        key: BatchKey | None = None,
        reverse_key: BatchKey | None = None,
        description: str = "",
        elidable: bool = False,
    ) -> None:
        self.sql = _statements(sql)
        self.reverse_sql = _statements(reverse_sql) if reverse_sql is not None else None
        self.key = key
        self.reverse_key = reverse_key if reverse_key is not None else key
        self.description = description
        self.elidable = elidable

    def deconstruct(self) -> tuple[str, list[Any], dict[str, Any]]:
        kwargs: dict[str, Any] = {"sql": list(self.sql), "key": self.key}
        if self.reverse_sql is not None:
            kwargs["reverse_sql"] = list(self.reverse_sql)
            kwargs["reverse_key"] = self.reverse_key
        if self.description:
            kwargs["description"] = self.description
        return self.__class__.__qualname__, [], kwargs

    @property
    def reversible(self) -> bool:  # type: ignore[override]
        return self.reverse_sql is not None

    def state_forwards(self, app_label, state) -> None:
        """A data change: the models do not change."""

    def statements(self, vendor: str, backwards: bool = False) -> list[str]:
        """The SQL for ``vendor`` in one direction, ``{batch}`` still in place."""
        source = self.reverse_sql if backwards else self.sql
        if source is None:
            raise ValueError(f"{self.describe()} is not reversible")
        return [text if isinstance(text, str) else for_vendor(text, vendor, feature=self.describe()) for text in source]

    def batch_key(self, backwards: bool = False) -> BatchKey | None:
        return self.reverse_key if backwards else self.key

    def _run_whole(self, schema_editor, backwards: bool) -> None:
        for statement in self.statements(schema_editor.connection.vendor, backwards):
            schema_editor.execute(statement.replace("{batch}", "TRUE"), params=())

    def database_forwards(self, app_label, schema_editor, from_state, to_state) -> None:
        self._run_whole(schema_editor, backwards=False)

    def database_backwards(self, app_label, schema_editor, from_state, to_state) -> None:
        if self.reverse_sql is None:
            raise NotImplementedError(f"{self.describe()} is not reversible")
        self._run_whole(schema_editor, backwards=True)

    def describe(self) -> str:
        what = self.description or "Batched SQL"
        return f"{what} (batched over {self.key.table})" if self.key else what

    @property
    def migration_name_fragment(self) -> str:
        return "batched_sql"


class BoundedRunPython(migrations.RunPython):
    """A RunPython that touches a small, fixed number of rows (reference data such as default
    prices), whatever the size of the tables: ``safe_migrate --online`` runs it in one short
    transaction instead of refusing it as an unbounded data change."""


def _skip(*args) -> None:
    """What a PostgreSQL-only operation does on every other engine."""


class PostgreSQLOnlySQL(migrations.RunSQL):
    """RunSQL that runs on PostgreSQL and is a no-op elsewhere (for PostgreSQL-only DDL such as
    exclusion constraints). It does not touch the migration state: the models do not declare the
    object, so `makemigrations` stays clean on every engine."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        run = for_vendor(
            {"postgresql": super().database_forwards}, schema_editor.connection, feature=self.describe(), default=_skip
        )
        run(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        run = for_vendor(
            {"postgresql": super().database_backwards}, schema_editor.connection, feature=self.describe(), default=_skip
        )
        run(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return "Raw SQL operation (PostgreSQL only)"
