"""SQLite's shadow tables: the tables a virtual table (FTS5, FTS3/4, R*Tree) keeps its rows in, which
SQLite creates, rewrites and drops with it. The plan records them before it runs (planning.py), and
the row-count guard judges them with their virtual table (row_guard.py)."""

from __future__ import annotations

import re
import sqlite3

from django.db import DatabaseError

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
