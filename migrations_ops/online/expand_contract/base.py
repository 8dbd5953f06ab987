"""What every expand/contract operation kind shares: its three halves and the facts it reads.

An operation that the release before and the release after can only both survive in two steps
(pgroll's start/complete, done with Django's objects) is planned as a :class:`WindowPlan`:

* ``expand`` runs with ``safe_migrate --online`` (catalog changes, triggers that keep old and new
  columns equal, backfills in batches, indexes built concurrently, constraints validated online);
* ``complete`` runs with ``safe_migrate --online --complete`` once the old release is gone
  (drops and swaps, each a catalog change in one short transaction);
* ``rollback`` runs with ``--online --abort`` while the window is open, and after a failure
  midway through the expand: it must hold whatever part of ``expand`` ran (every statement is
  ``IF EXISTS``), so the old release's schema comes back with every row of both releases.

Every statement is a :class:`~migrations_ops.online.statements.Statement`; a ``BACKFILL`` one holds
``{batch}`` and is walked in page ranges over its table like a ``RunSQLBatched``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from django.db import connections
from django.db.models import NOT_PROVIDED

from migrations_ops.online import facts
from migrations_ops.online.statements import CATALOG, VALIDATE, Statement

BACKFILL = "backfill"  # a set-based UPDATE with {batch}, walked in page ranges over ``table``
EXCLUSIVE = "ACCESS EXCLUSIVE (catalog only)"
TRIGGER_LOCK = "SHARE ROW EXCLUSIVE (catalog only)"


class Unsupported(Exception):
    """This operation cannot be split so that both releases keep working; the message says why."""


@dataclass
class WindowPlan:
    kind: str  # the module's name: rename_field, alter_type, ...
    expand: list[Statement]
    complete: list[Statement]
    rollback: list[Statement]
    notes: list[str] = field(default_factory=list)  # what each release sees during the window

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "complete": [statement.to_dict() for statement in self.complete],
            "rollback": [statement.to_dict() for statement in self.rollback],
            "window": self.notes,
        }

    def stored(self) -> dict[str, Any]:
        """What the checkpoint keeps, so that --complete and --abort need no re-planning."""
        return {
            "kind": self.kind,
            "complete": [statement.__dict__ for statement in self.complete],
            "rollback": [statement.__dict__ for statement in self.rollback],
        }


@dataclass
class Context:
    """One operation of a migration, with the model states around it and the tables that existed."""

    using: str
    revision: str
    index: int
    operation: Any
    app_label: str
    state: Any
    new_state: Any
    existing: set[str]

    @property
    def connection(self):
        return connections[self.using]

    def q(self, name: str) -> str:
        return self.connection.ops.quote_name(name)

    def model(self, model_name: str, new: bool = False):
        states = self.new_state if new else self.state
        return states.apps.get_model(self.app_label, model_name)

    def table(self, model_name: str, new: bool = False) -> str:
        return self.model(model_name, new)._meta.db_table

    def literal_value(self, field) -> Any:
        """The field's default as Django gives it to existing rows (a callable called once), or None."""
        with self.connection.schema_editor(collect_sql=True, atomic=False) as editor:
            return editor.effective_default(field)

    def literal(self, field) -> str | None:
        """That default as an SQL literal, or None if the field has none."""
        value = self.literal_value(field)
        if value is None:
            return None
        with self.connection.schema_editor(collect_sql=True, atomic=False) as editor:
            return editor.quote_value(value)

    def has_own_default(self, field) -> bool:
        return field.default is not NOT_PROVIDED or field.db_default is not NOT_PROVIDED

    def catalog_rows(self, sql: str, params: list[Any]) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()

    def referencing_constraints(self, table: str, column: str | None = None) -> list[tuple[str, str]]:
        """(table, constraint) of the foreign keys of other tables that point at ``table`` (``column``)."""
        return [
            (row[0], row[1])
            for row in self.catalog_rows(
                """
                SELECT c.conrelid::regclass::text, c.conname FROM pg_constraint c
                WHERE c.contype = 'f' AND c.confrelid = %s::regclass AND c.conrelid <> c.confrelid
                  AND (%s::text IS NULL OR EXISTS (
                    SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.confrelid AND a.attname = %s
                      AND a.attnum = ANY (c.confkey)))
                """,
                [self.q(table), column, column],
            )
        ]

    def own_foreign_keys(self, table: str, column: str | None = None) -> list[tuple[str, str]]:
        """(constraint name, definition) of ``table``'s foreign keys (on ``column``), from the catalog."""
        return [
            (row[0], row[1])
            for row in self.catalog_rows(
                """
                SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c
                WHERE c.contype = 'f' AND c.conrelid = %s::regclass
                  AND (%s::text IS NULL OR EXISTS (
                    SELECT 1 FROM pg_attribute a WHERE a.attrelid = c.conrelid AND a.attname = %s
                      AND a.attnum = ANY (c.conkey)))
                ORDER BY c.conname
                """,
                [self.q(table), column, column],
            )
        ]


def rolled_back(ctx: Context):
    """A cursor in a transaction that is always rolled back (facts.rolled_back), on ``ctx``'s database."""
    return facts.rolled_back(ctx.using)


def ident(*parts: str) -> str:
    """A name of ours (trigger, function, column, constraint): readable, unique, at most 63 bytes."""
    digest = hashlib.sha1("\0".join(parts).encode()).hexdigest()[:8]
    stem = "_".join(part for part in parts if part)[:46]
    return f"mo_{stem}_{digest}"


def catalog(sql: str, table: str, note: str = "", lock: str = EXCLUSIVE) -> Statement:
    return Statement(sql, CATALOG, table=table, lock=lock, note=note)


def backfill(sql: str, table: str, note: str) -> Statement:
    return Statement(sql, BACKFILL, table=table, lock="row locks of one batch", note=note)


def validate(ctx: Context, table: str, constraint: str) -> Statement:
    return Statement(
        f"ALTER TABLE {ctx.q(table)} VALIDATE CONSTRAINT {ctx.q(constraint)}",
        VALIDATE,
        table=table,
        lock="SHARE UPDATE EXCLUSIVE",
        note="validated online: reads and writes continue",
    )


def not_null_check(ctx: Context, table: str, column: str) -> tuple[list[Statement], str]:
    """A CHECK (column IS NOT NULL) added NOT VALID and validated online: PostgreSQL 12+ then sets
    NOT NULL from it without scanning the table under ACCESS EXCLUSIVE."""
    name = ident(table, column, "notnull")
    statements = [
        Statement(
            f"ALTER TABLE {ctx.q(table)} ADD CONSTRAINT {ctx.q(name)} CHECK ({ctx.q(column)} IS NOT NULL) NOT VALID",
            CATALOG,
            table=table,
            lock=EXCLUSIVE,
            note="CHECK (IS NOT NULL) added NOT VALID",
        ),
        validate(ctx, table, name),
    ]
    return statements, name


def trigger_statements(ctx: Context, table: str, name: str, body: str, note: str) -> tuple[Statement, list[str]]:
    """A BEFORE INSERT OR UPDATE trigger running ``body`` (PL/pgSQL over NEW and OLD), and the SQL
    that removes it."""
    function, trigger = ctx.q(name), ctx.q(name)
    sql = (
        f"CREATE OR REPLACE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $mo$\nBEGIN\n{body}\n"
        f"RETURN NEW;\nEND\n$mo$;\n"
        f"DROP TRIGGER IF EXISTS {trigger} ON {ctx.q(table)};\n"
        f"CREATE TRIGGER {trigger} BEFORE INSERT OR UPDATE ON {ctx.q(table)} FOR EACH ROW EXECUTE FUNCTION {function}()"
    )
    drop = [f"DROP TRIGGER IF EXISTS {trigger} ON {ctx.q(table)}", f"DROP FUNCTION IF EXISTS {function}()"]
    return Statement(sql, CATALOG, table=table, lock=TRIGGER_LOCK, note=note), drop


def index_statements(ctx: Context, model_name: str, field, column: str) -> list[Statement]:
    """The indexes, unique constraint and foreign key Django gives ``field`` when it is a column named
    ``column``, built online (indexes CONCURRENTLY, the foreign key NOT VALID then validated)."""
    from django.db import migrations

    from migrations_ops.online.statements import plan_statements

    shadow = field.clone()
    shadow.null = True  # the column is added nullable; NOT NULL comes from a validated CHECK
    shadow.db_column = column
    shadow.db_default = NOT_PROVIDED
    shadow.default = NOT_PROVIDED
    name = f"{field.name}__mo"
    operation = migrations.AddField(model_name, name, shadow)
    state = ctx.new_state.clone()
    after = state.clone()
    operation.state_forwards(ctx.app_label, after)
    with ctx.connection.schema_editor(collect_sql=True, atomic=False) as editor:
        operation.database_forwards(ctx.app_label, editor, state, after)
    planned = [s for sql in editor.collected_sql for s in plan_statements(sql, ctx.existing)]
    # The ADD COLUMN itself is the caller's (it decides the type and nullability); keep the rest.
    return [
        s
        for s in planned
        if not s.sql.upper().startswith(f"ALTER TABLE {ctx.q(ctx.table(model_name, True))} ADD COLUMN".upper())
    ]
