"""What one DDL statement does to a running application, and how to run it without blocking it.

Django writes each schema change as plain SQL (collected from its schema editor); this module
reads each statement and decides, for PostgreSQL, how ``safe_migrate --online`` runs it:

* a catalog change (new table, nullable column, column with a constant default, default or
  nullability relaxed, constraint dropped) runs as it is, in its own short transaction under a
  small ``lock_timeout`` (its ACCESS EXCLUSIVE lock is held for milliseconds);
* a foreign key or CHECK constraint on an existing table is added ``NOT VALID`` and validated
  later (``VALIDATE CONSTRAINT`` lets the application read and write meanwhile);
* an index on an existing table is built ``CONCURRENTLY``, outside any transaction; a UNIQUE
  column or constraint becomes a unique index built concurrently, then attached;
* anything that would rewrite or scan an existing table under ACCESS EXCLUSIVE, or remove
  something the running application may still use, is refused before anything runs.

Whether a column's default or new type rewrites the table is not read from the SQL text: the
server is asked (``probe``, facts.py), and a type change it makes in the catalog runs as one.

Tables created by the same online run are empty and unknown to the application: every statement
on them runs as it is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import sqlparse

# How a statement runs.
CATALOG = "catalog"  # short transaction, brief ACCESS EXCLUSIVE (or weaker) lock
CONCURRENT = "concurrent"  # outside a transaction: CREATE/DROP INDEX CONCURRENTLY
VALIDATE = "validate"  # VALIDATE CONSTRAINT: SHARE UPDATE EXCLUSIVE, the application keeps writing
SKIP = "skip"  # nothing to run (SET CONSTRAINTS outside a transaction)

_IDENT = r'"?([A-Za-z0-9_$]+)"?'
_ALTER = re.compile(r"^ALTER\s+TABLE\s+(?:ONLY\s+)?(?:IF\s+EXISTS\s+)?" + _IDENT + r"\s+(.*)$", re.I | re.S)
_CREATE_TABLE = re.compile(r"^CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _IDENT, re.I)
_CREATE_INDEX = re.compile(
    r"^CREATE\s+(UNIQUE\s+)?INDEX\s+(CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
    + _IDENT
    + r"\s+ON\s+(?:ONLY\s+)?"
    + _IDENT
    + r"(.*)$",
    re.I | re.S,
)
_DROP_INDEX = re.compile(r"^DROP\s+INDEX\s+(CONCURRENTLY\s+)?(IF\s+EXISTS\s+)?" + _IDENT, re.I)
_DROP_TABLE = re.compile(r"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?" + _IDENT + r"(\s+CASCADE)?\s*$", re.I)
_DATA = re.compile(
    r"^(?:UPDATE\s+" + _IDENT + r"|INSERT\s+INTO\s+" + _IDENT + r"|DELETE\s+FROM\s+" + _IDENT + ")", re.I
)
_INLINE_FK = re.compile(
    r"^ADD\s+COLUMN\s+"
    + _IDENT
    + r"(.*?)\s+CONSTRAINT\s+"
    + _IDENT
    + r"\s+REFERENCES\s+(.*?)(?:;\s*SET\s+CONSTRAINTS.*)?$",
    re.I | re.S,
)


# The server's answer to "does ALTER TABLE <table> <action> rewrite the table?": (rewrites, why) (facts.py).
Probe = Callable[[str, str], tuple[bool, str]]


class Refused(Exception):
    """This statement cannot run online; the message says why (and what to do instead)."""


@dataclass
class Statement:
    """One statement as the online path runs it."""

    sql: str
    mode: str  # CATALOG, CONCURRENT, VALIDATE or SKIP
    table: str | None = None
    lock: str = ""  # the strongest table lock it takes, as PostgreSQL names it
    note: str = ""  # what was changed, for --plan
    creates_index: str | None = None  # CONCURRENT builds: the index name (an INVALID leftover is rebuilt)
    validates: list[tuple[str, str]] = field(default_factory=list)  # (table, constraint) to VALIDATE later

    def to_dict(self) -> dict[str, object]:
        document: dict[str, object] = {"sql": self.sql, "mode": self.mode, "table": self.table, "lock": self.lock}
        if self.note:
            document["note"] = self.note
        return document


def _clean(sql: str) -> str:
    lines = [line for line in sql.strip().splitlines() if not line.strip().startswith("--")]
    return "\n".join(lines).strip().rstrip(";").strip()


def plan_statements(raw: str, existing: set[str], probe: Probe | None = None) -> list[Statement]:
    """The statements that run ``raw`` online, given the tables that existed before the run.

    ``raw`` may hold several statements (Django writes "SET CONSTRAINTS ...; ALTER TABLE ...").
    Raises :class:`Refused` when one would block the application beyond a catalog change. Whether a
    column's default or new type rewrites the table is the server's answer (``probe``, facts.py);
    without one, a default that calls a function and every type change are refused.
    """
    return [planned for part in sqlparse.split(raw) for planned in _plan_one(part, existing, probe)]


def _plan_one(raw: str, existing: set[str], probe: Probe | None) -> list[Statement]:
    sql = _clean(raw)
    if not sql:
        return []
    upper = sql.upper()
    if upper.startswith("SET CONSTRAINTS"):
        return [Statement(sql, SKIP, note="constraints are checked per statement outside a transaction")]
    if upper.startswith(("CREATE EXTENSION", "COMMENT ON", "CREATE SEQUENCE", "ALTER SEQUENCE")):
        return [Statement(sql, CATALOG, lock="catalog only")]
    if match := _CREATE_TABLE.match(sql):
        return [Statement(sql, CATALOG, table=match.group(1), lock="a new table")]
    if match := _CREATE_INDEX.match(sql):
        unique, _concurrently, name, table, rest = match.groups()
        if table not in existing:
            return [Statement(sql, CATALOG, table=table, lock="a new table")]
        kind = "UNIQUE INDEX" if unique else "INDEX"
        return [
            Statement(
                f"CREATE {kind} CONCURRENTLY {_q(name)} ON {_q(table)}{rest}",
                CONCURRENT,
                table=table,
                lock="SHARE UPDATE EXCLUSIVE",
                note="built CONCURRENTLY: reads and writes continue",
                creates_index=name,
            )
        ]
    if match := _DROP_INDEX.match(sql):
        name = match.group(3)
        return [Statement(f"DROP INDEX CONCURRENTLY IF EXISTS {_q(name)}", CONCURRENT, lock="SHARE UPDATE EXCLUSIVE")]
    if match := _DATA.match(sql):
        table = next(group for group in match.groups() if group)
        if table in existing:
            raise Refused(
                f"an unbatched data change on {table}, which the application uses: "
                "write it as migrations_ops.operations.RunSQLBatched"
            )
        return [Statement(sql, CATALOG, table=table, lock="a new table")]
    if match := _ALTER.match(sql):
        table, action = match.group(1), match.group(2).strip()
        if table not in existing:
            return [Statement(sql, CATALOG, table=table, lock="a new table")]
        return _alter_existing(table, action, probe)
    if (match := _DROP_TABLE.match(sql)) and match.group(1) not in existing:
        return [Statement(sql, CATALOG, table=match.group(1), lock="a new table")]  # made by this run: unused
    if upper.startswith(("DROP TABLE", "TRUNCATE", "ALTER TABLE", "DROP ")):
        raise Refused(f"removes or rewrites something the running application may still use: {sql[:80]}")
    raise Refused(f"a statement the online path does not know to be safe: {sql[:80]}")


def _q(name: str) -> str:
    return f'"{name}"'


def _rewrites(probe: Probe | None, table: str, action: str) -> tuple[bool, str]:
    if probe is None:
        return True, " (not asked of the server)"
    return probe(table, action)


def _alter_existing(table: str, action: str, probe: Probe | None = None) -> list[Statement]:
    head = action.upper()
    exclusive = "ACCESS EXCLUSIVE (catalog only)"
    if match := _INLINE_FK.match(action):
        column, definition, constraint, reference = match.groups()
        reference = reference.strip()
        return [
            *_alter_existing(table, f"ADD COLUMN {_q(column)}{definition}", probe),
            *_alter_existing(
                table, f"ADD CONSTRAINT {_q(constraint)} FOREIGN KEY ({_q(column)}) REFERENCES {reference}"
            ),
        ]
    if head.startswith("ADD COLUMN"):
        if re.search(r"\bNOT\s+NULL\b", head) and not re.search(r"\bDEFAULT\b", head):
            raise Refused(
                f"adds a NOT NULL column to {table} without a database default: code that predates it "
                "cannot insert rows (give the field db_default=...)"
            )
        if re.search(r"\b(PRIMARY\s+KEY|GENERATED)\b", head):
            raise Refused(f"adds a key or generated column to {table}, which rewrites the table")
        unique = re.search(r"\s+UNIQUE\b", action, re.I)
        added = action[: unique.start()] + action[unique.end() :] if unique else action
        if re.search(r"\bDEFAULT\b.*\(", action, re.I | re.S):  # a constant needs no question
            rewrite, why = _rewrites(probe, table, added)
            if rewrite:
                raise Refused(
                    f"adds a column to {table} whose default rewrites the table under ACCESS EXCLUSIVE{why}: "
                    "add it nullable without the default, fill it with RunSQLBatched, then set the default"
                )
        if not unique:
            return [Statement(f"ALTER TABLE {_q(table)} {action}", CATALOG, table=table, lock=exclusive)]
        column = re.match(r"ADD\s+COLUMN\s+" + _IDENT, action, re.I).group(1)
        name = f"{table}_{column}_key"[:63]
        return [
            Statement(
                f"ALTER TABLE {_q(table)} {action[: unique.start()] + action[unique.end() :]}",
                CATALOG,
                table=table,
                lock=exclusive,
                note="UNIQUE moved to an index built concurrently",
            ),
            *_unique_concurrently(table, name, _q(column)),
        ]
    if re.match(r"ALTER\s+COLUMN\s+\S+\s+(SET|DROP)\s+DEFAULT\b", head) or re.match(
        r"ALTER\s+COLUMN\s+\S+\s+DROP\s+NOT\s+NULL\b", head
    ):
        return [Statement(f"ALTER TABLE {_q(table)} {action}", CATALOG, table=table, lock=exclusive)]
    if re.match(r"ALTER\s+COLUMN\s+\S+\s+SET\s+NOT\s+NULL\b", head):
        raise Refused(
            f"SET NOT NULL scans {table} under ACCESS EXCLUSIVE: add a CHECK (column IS NOT NULL) constraint "
            "first (it is validated online), then set NOT NULL in a later release"
        )
    if re.match(r"ALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\b", head):
        rewrite, why = _rewrites(probe, table, action)
        if rewrite:
            raise Refused(f"changes a column type of {table}, which rewrites the table under ACCESS EXCLUSIVE{why}")
        return [
            Statement(
                f"ALTER TABLE {_q(table)} {action}",
                CATALOG,
                table=table,
                lock=exclusive,
                note="type changed in the catalog: the server rewrites nothing (asked on an empty copy)",
            )
        ]
    if match := re.match(r"ADD\s+CONSTRAINT\s+" + _IDENT + r"\s+(FOREIGN\s+KEY|CHECK)\b(.*)$", action, re.I | re.S):
        name, kind = match.group(1), match.group(2).upper()
        body = re.sub(r"\s+NOT\s+VALID\s*$", "", action, flags=re.I)
        lock = "SHARE ROW EXCLUSIVE (catalog only)" if kind.startswith("FOREIGN") else exclusive
        return [
            Statement(
                f"ALTER TABLE {_q(table)} {body} NOT VALID",
                CATALOG,
                table=table,
                lock=lock,
                note="added NOT VALID, validated online afterwards",
                validates=[(table, name)],
            )
        ]
    if match := re.match(r"ADD\s+CONSTRAINT\s+" + _IDENT + r"\s+UNIQUE\s*(\(.*\))\s*$", action, re.I | re.S):
        name, columns = match.groups()
        return _unique_concurrently(table, name, columns.strip()[1:-1])
    if re.match(r"DROP\s+CONSTRAINT\b", head) or re.match(r"VALIDATE\s+CONSTRAINT\b", head):
        mode = VALIDATE if head.startswith("VALIDATE") else CATALOG
        return [Statement(f"ALTER TABLE {_q(table)} {action}", mode, table=table, lock=exclusive)]
    if re.match(r"(DROP\s+COLUMN|RENAME|SET\s+TABLESPACE|SET\s+(UN)?LOGGED|ADD\s+PRIMARY)", head):
        raise Refused(f"removes, renames or rewrites part of {table}, which the running application may still use")
    raise Refused(f"an ALTER TABLE {table} the online path does not know to be safe: {action[:80]}")


def _unique_concurrently(table: str, name: str, columns: str) -> list[Statement]:
    return [
        Statement(
            f"CREATE UNIQUE INDEX CONCURRENTLY {_q(name)} ON {_q(table)} ({columns})",
            CONCURRENT,
            table=table,
            lock="SHARE UPDATE EXCLUSIVE",
            note="unique index built CONCURRENTLY",
            creates_index=name,
        ),
        Statement(
            f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(name)} UNIQUE USING INDEX {_q(name)}",
            CATALOG,
            table=table,
            lock="ACCESS EXCLUSIVE (catalog only)",
            note="the index becomes the constraint",
        ),
    ]


def validation_statement(table: str, constraint: str) -> Statement:
    return Statement(
        f"ALTER TABLE {_q(table)} VALIDATE CONSTRAINT {_q(constraint)}",
        VALIDATE,
        table=table,
        lock="SHARE UPDATE EXCLUSIVE",
        note="scans without blocking writes",
    )


def inverse(statement: Statement) -> Statement | None:
    """What removes the object ``statement`` created (for undoing an operation that stopped midway)."""
    sql = statement.sql
    if match := _CREATE_TABLE.match(sql):
        return Statement(f"DROP TABLE IF EXISTS {_q(match.group(1))} CASCADE", CATALOG, table=match.group(1))
    if match := _CREATE_INDEX.match(sql):
        return Statement(f"DROP INDEX CONCURRENTLY IF EXISTS {_q(match.group(3))}", CONCURRENT, table=match.group(4))
    if match := _ALTER.match(sql):
        table, action = match.group(1), match.group(2).strip()
        if column := re.match(r"ADD\s+COLUMN\s+(?:IF\s+NOT\s+EXISTS\s+)?" + _IDENT, action, re.I):
            name = _q(column.group(1))
            return Statement(f"ALTER TABLE {_q(table)} DROP COLUMN IF EXISTS {name}", CATALOG, table=table)
        if constraint := re.match(r"ADD\s+CONSTRAINT\s+" + _IDENT, action, re.I):
            name = _q(constraint.group(1))
            return Statement(f"ALTER TABLE {_q(table)} DROP CONSTRAINT IF EXISTS {name}", CATALOG, table=table)
    return None  # defaults, validations, extensions: nothing to remove
