"""What the server itself says a statement does to a table, asked rather than guessed from SQL text.

The online verdicts that reading SQL cannot make are made here, on PostgreSQL's own answer:

* **does an ALTER TABLE rewrite the table?** The statement runs on an empty copy of the table
  (``CREATE TEMP TABLE ... (LIKE ... INCLUDING ALL)``) in a transaction that is rolled back; a new
  ``pg_class.relfilenode`` of the copy or of one of its indexes is a rewrite. PostgreSQL gives a
  rewritten relation a new file whatever its row count, so the empty copy answers for the real table:
  a volatile default (``gen_random_uuid()``, ``random()``, however it is spelt) rewrites, a stable one
  (``now()``) does not; ``varchar(50) -> varchar(100)``, ``varchar -> text`` and numeric precision
  growing at the same scale change the catalog only, ``integer -> bigint`` rewrites.
* **which functions does an expression call, and how volatile is each?** ``pg_proc.provolatile`` of
  the names it calls: the reason a refusal gives.

A question the server cannot answer (the copy cannot be made, the statement fails on it) is
answered "it rewrites": the caller refuses, and the refusal carries the server's error.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from django.db import DatabaseError, connections, transaction

from migrations_ops.errors import first_line

_VOLATILITY = {"v": "volatile", "s": "stable", "i": "immutable"}


@dataclass(frozen=True)
class Rewrite:
    """The server's answer: does the statement rewrite the table (or an index of it)?"""

    rewrites: bool
    error: str = ""  # why the server could not answer (then ``rewrites`` is True)


class _RollBack(Exception):
    pass


@contextmanager
def rolled_back(using: str) -> Iterator[Any]:
    """A cursor in a transaction (or savepoint) that is always rolled back, with short timeouts:
    for asking the server a question on a scratch object without leaving anything behind."""
    connection = connections[using]
    try:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '100ms'; SET LOCAL statement_timeout = '30s'")
            yield cursor
            raise _RollBack
    except _RollBack:
        pass  # the point: nothing of the question stays


def rewrites(using: str, table: str, action: str) -> Rewrite:
    """Does ``ALTER TABLE table <action>`` rewrite ``table`` or one of its indexes? (Asked on an empty copy.)"""
    connection = connections[using]
    probe = f"pg_temp.{connection.ops.quote_name('mo_probe_' + table[:40])}"
    answer = Rewrite(True, "the server was not asked")
    try:
        with rolled_back(using) as cursor:
            cursor.execute(f"CREATE TEMP TABLE {probe} (LIKE {connection.ops.quote_name(table)} INCLUDING ALL)")
            files = _files(cursor, probe)
            cursor.execute(f"ALTER TABLE {probe} {action}")
            answer = Rewrite(_files(cursor, probe) != files)
    except DatabaseError as exc:
        answer = Rewrite(True, first_line(exc))
    return answer


def probe(using: str):
    """``rewrites`` as statements.plan_statements asks it: (rewrites, why, for the refusal)."""

    def answer(table: str, action: str) -> tuple[bool, str]:
        found = rewrites(using, table, action)
        if found.error:
            return True, f" (the server could not tell: {found.error})"
        return found.rewrites, why_it_rewrites(using, action) if found.rewrites else ""

    return answer


def _files(cursor, table: str) -> list[tuple[str, int]]:
    cursor.execute(
        "SELECT c.relname, c.relfilenode FROM pg_class c WHERE c.oid = %s::regclass "
        "OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %s::regclass) ORDER BY 1",
        [table, table],
    )
    return cursor.fetchall()


def volatility(using: str, expression: str) -> list[tuple[str, str]]:
    """(function, volatility) of each function ``expression`` calls that pg_proc knows, most volatile first."""
    names = sorted({name.lower() for name in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", expression)})
    if not names:
        return []
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT proname, max(provolatile) FROM pg_proc WHERE proname = ANY(%s) GROUP BY proname "
            "ORDER BY max(provolatile) DESC, proname",
            [names],
        )
        return [(name, _VOLATILITY.get(code, code)) for name, code in cursor.fetchall()]


def why_it_rewrites(using: str, action: str) -> str:
    """The facts behind a rewrite of an ADD COLUMN: the volatile functions its default calls, if any."""
    default = re.search(r"\bDEFAULT\b(.*?)(?:\bNOT\s+NULL\b|\bNULL\b|\bCONSTRAINT\b|\bUNIQUE\b|$)", action, re.I | re.S)
    if not default:
        return ""
    volatile = [name for name, kind in volatility(using, default.group(1)) if kind == "volatile"]
    if not volatile:
        return ""
    return f" ({', '.join(f'{name}()' for name in volatile)}: volatile in pg_proc, evaluated once per row)"
