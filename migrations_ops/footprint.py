"""What a migration plan could have changed, and nothing else: the schema and django_migrations.

After a rollback, a reversal or a restore, "the database is as before" must not be judged by row
counts: the application keeps writing, and its inserts are not the plan's doing. A plan's own
statements change the schema (tables, columns, constraints, indexes) and django_migrations; data
its migrations wrote is undone by the same transaction or reverse migration that undoes the schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops.status import RUN_RECORD_TABLES, applied_migrations

MAX_SHOWN = 8  # named differences per line; the rest are counted


@dataclass(frozen=True)
class Footprint:
    migrations: dict[str, list[str]]
    # table -> (columns, constraints), each a tuple sorted by name: the order of a table's columns and
    # constraints is no difference (SQLite rebuilds a table with its columns in another order).
    # A column is (name, type, nullable); a constraint or index (name, columns, unique, index).
    schema: dict[str, tuple[tuple, tuple]]

    def differences(self, after: Footprint) -> list[str]:
        """What ``after`` has that this footprint has not, and the other way round: one line per table,
        naming each column, constraint or index added, removed or changed."""
        problems = []
        if after.migrations != self.migrations:
            problems.append(
                "applied migrations differ from before" + _migration_changes(self.migrations, after.migrations)
            )
        for table in sorted(set(self.schema) | set(after.schema)):
            if table not in after.schema:
                problems.append(f"table {table} is gone")
            elif table not in self.schema:
                problems.append(f"table {table} was left behind")
            elif after.schema[table] != self.schema[table]:
                changes = _table_changes(self.schema[table], after.schema[table])
                if changes:
                    problems.append(f"table {table}: {changes}")
        return problems


def _shown(items: list[str]) -> str:
    more = f", and {len(items) - MAX_SHOWN} more" if len(items) > MAX_SHOWN else ""
    return ", ".join(items[:MAX_SHOWN]) + more


def _migration_changes(before: dict[str, list[str]], after: dict[str, list[str]]) -> str:
    def revisions(applied: dict[str, list[str]]) -> set[str]:
        return {f"{app}.{name}" for app, names in applied.items() for name in names}

    now, then = revisions(after), revisions(before)
    parts = []
    if now - then:
        parts.append(f"now applied: {_shown(sorted(now - then))}")
    if then - now:
        parts.append(f"no longer applied: {_shown(sorted(then - now))}")
    return f" ({'; '.join(parts)})" if parts else ""


def _table_changes(before: tuple[tuple, tuple], after: tuple[tuple, tuple]) -> str:
    """One table's differences, columns then constraints and indexes, each by name."""
    changes = []
    old_columns = {name: (kind, null) for name, kind, null in before[0]}
    new_columns = {name: (kind, null) for name, kind, null in after[0]}
    for name in sorted(old_columns.keys() | new_columns.keys()):
        if name not in new_columns:
            changes.append(f"column {name} removed")
        elif name not in old_columns:
            changes.append(f"column {name} added")
        elif old_columns[name] != new_columns[name]:
            (old_type, old_null), (new_type, new_null) = old_columns[name], new_columns[name]
            what = []
            if old_type != new_type:
                what.append(f"type {old_type} -> {new_type}")
            if old_null != new_null:
                what.append(f"{_nullability(old_null)} -> {_nullability(new_null)}")
            changes.append(f"column {name} {' and '.join(what)}")
    old_constraints = {name: rest for name, *rest in before[1]}
    new_constraints = {name: rest for name, *rest in after[1]}
    _drop_renamed(old_constraints, new_constraints)
    for name in sorted(old_constraints.keys() | new_constraints.keys()):
        old, new = old_constraints.get(name), new_constraints.get(name)
        kind = "index" if (old or new)[2] else "constraint"
        if new is None:
            changes.append(f"{kind} {name} removed")
        elif old is None:
            changes.append(f"{kind} {name} added")
        elif old != new:
            what = []
            if old[0] != new[0]:
                what.append(f"columns {', '.join(old[0]) or '(none)'} -> {', '.join(new[0]) or '(none)'}")
            if old[1] != new[1]:
                what.append("unique -> not unique" if old[1] else "not unique -> unique")
            if old[2] != new[2]:
                what.append("index -> constraint" if old[2] else "constraint -> index")
            changes.append(f"{kind} {name} changed ({'; '.join(what)})")
    return _shown(changes)


def _drop_renamed(old: dict[str, list], new: dict[str, list]) -> None:
    """Take out an index or constraint that only changed its name: same columns, same uniqueness and
    kind. A reverse migration on SQLite rebuilds a table and names its field indexes after the table
    name of the moment (wagtailcore_revision_* on a table renamed back to wagtailcore_pagerevision):
    the same schema to Django, which finds such indexes by their columns; an index named in
    Meta.indexes keeps its name through any rebuild, so a name that matters never differs."""
    gone = {name: definition for name, definition in old.items() if name not in new}
    added = {name: definition for name, definition in new.items() if name not in old}
    for name, definition in gone.items():
        twin = next((other for other, candidate in added.items() if candidate == definition), None)
        if twin is not None:
            del old[name], new[twin], added[twin]


def _nullability(null_ok: bool) -> str:
    return "nullable" if null_ok else "NOT NULL"


def _type_name(introspection: Any, type_code: Any) -> str:
    """A column's type as shown in a difference: SQLite's declared type; elsewhere (a type OID on
    PostgreSQL) the Django field it maps to, with the code itself (the same code gives the same name)."""
    if isinstance(type_code, str):
        return type_code
    try:
        return f"{introspection.data_types_reverse[type_code]} ({type_code})"
    except (KeyError, TypeError):
        return str(type_code)


def capture(using: str = DEFAULT_DB_ALIAS) -> Footprint:
    """The schema of every table (columns with type and nullability, constraints and indexes by name
    and columns) and the applied migrations, read from the catalog only."""
    connection = connections[using]
    introspection = connection.introspection
    schema = {}
    with connection.cursor() as cursor:
        # Of the bookkeeping tables (status.BOOKKEEPING_TABLES) only the run records are left out: they
        # are safe_migrate's own, written outside any plan. The rest of the bookkeeping (django_migrations,
        # content types, checksums) has rows a plan changes, but its schema changes only by migrating,
        # so a schema left changed there is the plan's and must be seen.
        for table in sorted(set(introspection.table_names(cursor)) - RUN_RECORD_TABLES):
            columns = tuple(
                sorted(
                    (column.name, _type_name(introspection, column.type_code), bool(column.null_ok))
                    for column in introspection.get_table_description(cursor, table)
                )
            )
            constraints = tuple(
                sorted(
                    (name, tuple(info.get("columns") or ()), bool(info.get("unique")), bool(info.get("index")))
                    for name, info in introspection.get_constraints(cursor, table).items()
                )
            )
            schema[table] = (columns, constraints)
    return Footprint(migrations=applied_migrations(using), schema=schema)
