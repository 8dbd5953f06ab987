"""The row-count guard: after a plan, no table that existed before it has lost rows, unless the plan
drops it or the operator names it (``--allow-row-loss``).

A table is followed through the plan, not by its name: a table the plan renames (RenameModel,
AlterModelTable, their auto-created many-to-many tables; ``MigrationPlan.renamed_tables``) is
compared under its new name, and a table the plan drops (``MigrationPlan.dropped_tables``) is no
loss. SQLite keeps a virtual table's rows (FTS5, FTS3/4, R*Tree) in shadow tables that it creates,
rewrites and drops with it: they are judged by their virtual table, never on their own (an FTS
index merging its segments has fewer rows in ``<name>_data`` and lost nothing).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from migrations_ops.checks import CheckResult
from migrations_ops.status import BOOKKEEPING_TABLES

if TYPE_CHECKING:
    from migrations_ops.planning import MigrationPlan

# The shadow tables of SQLite's own virtual table modules, by module (used where PRAGMA table_list,
# SQLite 3.37+, cannot say which tables are shadow tables).
SHADOW_SUFFIXES: dict[str, tuple[str, ...]] = {
    "fts5": ("data", "idx", "content", "docsize", "config"),
    "fts4": ("content", "segments", "segdir", "docsize", "stat"),
    "fts3": ("content", "segments", "segdir", "docsize", "stat"),
    "rtree": ("node", "rowid", "parent"),
    "rtree_i32": ("node", "rowid", "parent"),
    "geopoly": ("node", "rowid", "parent"),
}
_MODULE = re.compile(r"\bUSING\s+[\"'`\[]?(\w+)", re.IGNORECASE)


def row_count_guard(
    plan: MigrationPlan,
    before_counts: Mapping[str, int],
    after_counts: Mapping[str, int],
    own_changes: Mapping[str, int] | None = None,
    allowed: frozenset[str] | set[str] = frozenset(),
    shadow_tables: Mapping[str, set[str]] | None = None,
) -> CheckResult:
    """Compare the row counts before the plan (``before_counts``, by table) with those after it.

    Each table of ``before_counts`` (Django's bookkeeping tables aside) is looked up under the name
    the plan leaves it with (``plan.renamed_tables()``). It is a loss when that table is gone and the
    plan did not drop it (``plan.dropped_tables()``), or when it has fewer rows: by ``own_changes``
    when given (rows the plan's own transactions added or removed, per table name, where the engine
    counts them: rows other clients deleted meanwhile are not the plan's loss), else by
    ``after_counts``. ``allowed`` (``--allow-row-loss``) accepts a table by its old or its new name.
    ``shadow_tables`` (virtual table -> its shadow tables, before the plan; default: the plan's)
    are left to their virtual table. A loss after a rename names both: ``a (renamed b): 5 -> 3``.
    """
    shadows = plan.shadow_tables if shadow_tables is None else shadow_tables
    shadow = {name for names in shadows.values() for name in names}
    renamed = plan.renamed_tables()
    taken = set(renamed.values())  # names that end up on another table
    dropped = plan.dropped_tables()
    losses: dict[str, dict[str, Any]] = {}
    for table, count in sorted(before_counts.items()):
        final = renamed.get(table, table)
        if table in BOOKKEEPING_TABLES or table in shadow or {table, final} & set(allowed):
            continue
        if table in dropped and (final not in after_counts or final in taken):
            continue
        if final not in after_counts:
            after = None
        elif own_changes is not None:
            # Counted by name as the server saw it: under every name the table had in the plan.
            after = count + sum(own_changes.get(name, 0) for name in dict.fromkeys(plan.table_names(table)))
        else:
            after = after_counts[final]
        if after is None or after < count:
            losses[table] = {"before": count, "after": after}
            if final != table:
                losses[table]["renamed"] = final
    summary = (
        "; ".join(_describe(table, loss) for table, loss in losses.items())
        + " (name the table with --allow-row-loss to accept)"
        if losses
        else "no table lost rows"
    )
    return CheckResult(name="row_count_guard", ok=not losses, details={"summary": summary, "losses": losses})


def _describe(table: str, loss: Mapping[str, Any]) -> str:
    name = f"{table} (renamed {loss['renamed']})" if "renamed" in loss else table
    after = "table gone" if loss["after"] is None else loss["after"]
    return f"{name}: {loss['before']} -> {after}"


def shadow_tables(connection) -> dict[str, set[str]]:
    """SQLite: each virtual table with its shadow tables, as the catalog has them now (``{}`` on
    other engines). ``PRAGMA table_list`` (SQLite 3.37+) marks shadow tables itself; before that
    they are found by name (:func:`shadow_tables_by_name`)."""
    if connection.vendor != "sqlite":
        return {}
    with connection.cursor() as cursor:
        if sqlite3.sqlite_version_info >= (3, 37):
            try:
                cursor.execute("PRAGMA main.table_list")
                rows = cursor.fetchall()
            except DatabaseError:
                rows = None
            if rows is not None:
                virtual = {name for _, name, kind, *_ in rows if kind == "virtual"}
                return _by_owner(virtual, {name for _, name, kind, *_ in rows if kind == "shadow"})
        return shadow_tables_by_name(cursor)


def shadow_tables_by_name(cursor) -> dict[str, set[str]]:
    """SQLite before 3.37: the shadow tables of each virtual table of a known module
    (:data:`SHADOW_SUFFIXES`), the tables named ``<virtual table>_<suffix>`` that exist beside it.
    A virtual table of another module is taken to have none (its tables stay guarded)."""
    cursor.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")
    rows = cursor.fetchall()
    names = {name for name, _ in rows}
    found: dict[str, set[str]] = {}
    for name, sql in rows:
        text = (sql or "").lstrip()
        if not text.upper().startswith("CREATE VIRTUAL TABLE"):
            continue
        module = _MODULE.search(text)
        suffixes = SHADOW_SUFFIXES.get(module.group(1).lower(), ()) if module else ()
        own = {f"{name}_{suffix}" for suffix in suffixes} & names
        if own:
            found[name] = own
    return found


def _by_owner(virtual: set[str], shadow: set[str]) -> dict[str, set[str]]:
    """Each shadow table under the virtual table whose name, with ``_``, begins its name (the longest)."""
    found: dict[str, set[str]] = {}
    for name in shadow:
        owners = [table for table in virtual if name.startswith(f"{table}_")]
        if owners:
            found.setdefault(max(owners, key=len), set()).add(name)
    return found
