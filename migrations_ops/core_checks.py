"""Engine-level integrity checks, registered per vendor (catalog SQL lives here, set-based only).

PostgreSQL: every foreign key of the application schema read from ``pg_constraint`` (not only
Django's models), constraints left ``NOT VALID`` and the rows violating them, invalid or not-ready
indexes and the duplicates behind an invalid unique index, and with ``--deep`` amcheck.
SQLite: ``PRAGMA foreign_key_check`` and ``PRAGMA quick_check`` (``integrity_check`` when deep).
"""

from __future__ import annotations

from django.db import DatabaseError, transaction

from migrations_ops.checks import CORE, JUST_RESTORED, SAMPLE_SIZE, failed, fetch_sample, passed, register, skipped
from migrations_ops.errors import first_line

POSTGRESQL = ("postgresql",)
SQLITE = ("sqlite",)

# The application schema: the schemas on the search path, without the system ones.
_APP_NAMESPACE = "n.nspname = ANY (current_schemas(false))"


def _rows(connection, sql: str, params=()) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        return cursor.fetchall()


# --- PostgreSQL -----------------------------------------------------------------------------------

_FOREIGN_KEYS_SQL = f"""
SELECT con.conname,
       nc.nspname, c.relname, nf.nspname, f.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY AS k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord),
       ARRAY(SELECT a.attname FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = con.conrelid AND i.indisprimary ORDER BY a.attnum),
       con.convalidated
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace nc ON nc.oid = c.relnamespace
JOIN pg_class f ON f.oid = con.confrelid
JOIN pg_namespace nf ON nf.oid = f.relnamespace
JOIN pg_namespace n ON n.oid = con.connamespace
WHERE con.contype = 'f' AND {_APP_NAMESPACE}
ORDER BY c.relname, con.conname
"""


@register("foreign_keys", vendors=POSTGRESQL, tags=(CORE,))
def pg_foreign_keys(connection):
    """Rows whose foreign key points at nothing, for every foreign key in pg_constraint."""
    qn = connection.ops.quote_name
    problems = []
    constraints = _rows(connection, _FOREIGN_KEYS_SQL)
    # Right after a single-transaction restore, ADD FOREIGN KEY validated every row of each key it
    # created, inside that transaction; re-proving it was about half of validation's time at 1M-4M
    # rows. Keys restored NOT VALID were not validated by anyone and are still checked.
    trusted = JUST_RESTORED.get()
    proven = 0
    for name, child_ns, child, parent_ns, parent, columns, parent_columns, pk, validated in constraints:
        if validated and trusted:
            proven += 1
            continue
        child_ref = f"{qn(child_ns)}.{qn(child)}"
        parent_ref = f"{qn(parent_ns)}.{qn(parent)}"
        shown = list(pk) if pk else ["ctid"]
        select = ", ".join(f"c.{qn(col)}" if col != "ctid" else "c.ctid::text" for col in shown)
        not_null = " AND ".join(f"c.{qn(col)} IS NOT NULL" for col in columns)
        join = " AND ".join(f"p.{qn(pc)} = c.{qn(cc)}" for cc, pc in zip(columns, parent_columns, strict=True))
        orphans = f"FROM {child_ref} c WHERE {not_null} AND NOT EXISTS (SELECT 1 FROM {parent_ref} p WHERE {join})"
        # Counting first reads only the two keys' indexes (a parallel merge anti-join of index-only
        # scans where the planner likes it); the orphans themselves are fetched only when there are some.
        if not _rows(connection, f"SELECT COUNT(*) {orphans}")[0][0]:
            continue
        count, rows = fetch_sample(
            connection, f"SELECT {select}, {', '.join(f'c.{qn(col)}' for col in columns)} {orphans}"
        )
        if count:
            problems.append(
                {
                    "constraint": name,
                    "table": child,
                    "references": f"{parent}({', '.join(parent_columns)})",
                    "count": count,
                    "first": [_row_text(shown, columns, row) for row in rows],
                    "validated": validated,
                }
            )
    details = {"count": sum(p["count"] for p in problems), "foreign_keys": len(constraints)}
    if trusted:
        details["proven_by_the_restore"] = proven
    if problems:
        details["orphans"] = problems
        return failed(details)
    return passed(details)


def _row_text(pk: list[str], columns: list[str], row: tuple) -> str:
    ids = ", ".join(f"{col}={val}" for col, val in zip(pk, row[: len(pk)], strict=True))
    refs = ", ".join(f"{col}={val}" for col, val in zip(columns, row[len(pk) :], strict=True))
    return f"{ids} -> {refs}"


_NOT_VALID_SQL = f"""
SELECT con.conname, con.contype, nc.nspname, c.relname, pg_get_expr(con.conbin, con.conrelid),
       ARRAY(SELECT a.attname FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)
             WHERE i.indrelid = con.conrelid AND i.indisprimary ORDER BY a.attnum)
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace nc ON nc.oid = c.relnamespace
JOIN pg_namespace n ON n.oid = con.connamespace
WHERE NOT con.convalidated AND {_APP_NAMESPACE}
ORDER BY c.relname, con.conname
"""


@register("not_valid_constraints", vendors=POSTGRESQL, tags=(CORE,))
def pg_not_valid_constraints(connection):
    """Constraints left NOT VALID, and the rows that violate such a check constraint.

    A NOT VALID constraint that no row violates is a note, not a failure (adding a constraint
    NOT VALID and validating it later is the standard way on a big table); orphans behind a
    NOT VALID foreign key are counted by ``foreign_keys``.
    """
    qn = connection.ops.quote_name
    listed, violations = [], []
    for name, kind, schema, table, expression, pk in _rows(connection, _NOT_VALID_SQL):
        entry = {"constraint": name, "table": table, "kind": {"c": "check", "f": "foreign key"}.get(kind, kind)}
        if kind == "c" and expression:
            shown = list(pk) if pk else ["ctid"]
            select = ", ".join(f"t.{qn(col)}" if col != "ctid" else "t.ctid::text" for col in shown)
            sql = f"SELECT {select} FROM {qn(schema)}.{qn(table)} t WHERE NOT ({expression})"
            count, rows = fetch_sample(connection, sql)
            entry["violating_rows"] = count
            if count:
                entry["first"] = [row[0] if len(row) == 1 else list(row) for row in rows]
                violations.append(entry)
        listed.append(entry)
    details = {"count": sum(v["violating_rows"] for v in violations), "not_valid": listed}
    if violations:
        return failed(details)
    if listed:
        names = ", ".join(e["constraint"] for e in listed)
        details["note"] = f"NOT VALID (no violating rows; ALTER TABLE ... VALIDATE CONSTRAINT): {names}"
    return passed(details)


_BAD_INDEXES_SQL = f"""
SELECT ic.relname, c.relname, n.nspname, i.indisvalid, i.indisready, i.indisunique, i.indexrelid,
       i.indnkeyatts, pg_get_expr(i.indpred, i.indrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (NOT i.indisvalid OR NOT i.indisready) AND {_APP_NAMESPACE}
ORDER BY c.relname, ic.relname
"""


@register("indexes", vendors=POSTGRESQL, tags=(CORE,))
def pg_indexes(connection):
    """Invalid or not-ready indexes, and duplicate keys behind an invalid unique index."""
    qn = connection.ops.quote_name
    bad = []
    for index, table, schema, valid, ready, unique, oid, nkeys, predicate in _rows(connection, _BAD_INDEXES_SQL):
        entry = {"index": index, "table": table, "valid": valid, "ready": ready, "unique": unique}
        if unique:
            keys = [
                row[0]
                for row in _rows(
                    connection, "SELECT pg_get_indexdef(%s, k, true) FROM generate_series(1, %s) k", [oid, nkeys]
                )
            ]
            where = " AND ".join(f"({key}) IS NOT NULL" for key in keys)
            if predicate:
                where += f" AND ({predicate})"
            key_list = ", ".join(f"({key})" for key in keys)
            sql = (
                f"SELECT {key_list}, COUNT(*) FROM {qn(schema)}.{qn(table)} WHERE {where} "
                f"GROUP BY {key_list} HAVING COUNT(*) > 1"
            )
            count, rows = fetch_sample(connection, sql)
            entry["duplicate_keys"] = count
            entry["first"] = [", ".join(str(v) for v in row[:-1]) + f" (x{row[-1]})" for row in rows]
        entry["fix"] = f"DROP INDEX CONCURRENTLY {qn(schema)}.{qn(index)} (then recreate it)"
        bad.append(entry)
    if bad:
        return failed({"count": len(bad), "indexes": bad})
    return passed({"count": 0})


@register("amcheck", vendors=POSTGRESQL, deep_only=True, tags=(CORE,))
def pg_amcheck(connection):
    """amcheck's bt_index_check on every valid btree index of the application schema."""
    installed = _rows(
        connection,
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
        "ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'",
    )
    if not installed:
        available = _rows(connection, "SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'")
        how = "CREATE EXTENSION amcheck" if available else "the server has no amcheck (postgresql-contrib)"
        return skipped(f"amcheck not installed ({how})")
    schema = connection.ops.quote_name(installed[0][0])
    indexes = _rows(
        connection,
        f"""SELECT ic.oid, ic.relname, c.relname FROM pg_index i
            JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam
            JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE am.amname = 'btree' AND i.indisvalid AND i.indisready AND {_APP_NAMESPACE}
            ORDER BY c.relname, ic.relname""",
    )
    corrupt = []
    for oid, index, table in indexes:
        try:
            with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
                cursor.execute(f"SELECT {schema}.bt_index_check(%s::regclass)", [oid])
        except DatabaseError as exc:
            corrupt.append({"index": index, "table": table, "error": first_line(exc)})
    details = {"count": len(corrupt), "indexes_checked": len(indexes)}
    if corrupt:
        details["corrupt"] = corrupt[:SAMPLE_SIZE]
        return failed(details)
    return passed(details)


# --- SQLite ---------------------------------------------------------------------------------------


@register("foreign_keys", vendors=SQLITE, tags=(CORE,))
def sqlite_foreign_keys(connection):
    """PRAGMA foreign_key_check: rows whose foreign key points at nothing."""
    rows = _rows(connection, "PRAGMA foreign_key_check")
    per_table: dict[tuple[str, str], list] = {}
    for table, rowid, parent, _fkid in rows:
        per_table.setdefault((table, parent), []).append(rowid)
    orphans = [
        {"table": table, "references": parent, "count": len(ids), "first": sorted(ids)[:SAMPLE_SIZE]}
        for (table, parent), ids in sorted(per_table.items())
    ]
    details = {"count": len(rows)}
    if orphans:
        details["orphans"] = orphans
        return failed(details)
    return passed(details)


@register("quick_check", vendors=SQLITE, tags=(CORE,))
def sqlite_quick_check(connection):
    """PRAGMA quick_check: page structure, records, NOT NULL and CHECK constraints."""
    return _sqlite_pragma_check(connection, "quick_check")


@register("integrity_check", vendors=SQLITE, deep_only=True, tags=(CORE,))
def sqlite_integrity_check(connection):
    """PRAGMA integrity_check: quick_check plus UNIQUE constraints and index contents."""
    return _sqlite_pragma_check(connection, "integrity_check")


def _sqlite_pragma_check(connection, pragma: str):
    messages = [row[0] for row in _rows(connection, f"PRAGMA {pragma}({SAMPLE_SIZE})")]
    if messages == ["ok"]:
        return passed({"count": 0})
    return failed({"count": len(messages), "first": messages})
