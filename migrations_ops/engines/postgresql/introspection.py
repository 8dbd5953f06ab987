"""Catalog reads: identity, tables and special relations, write counters, locks, sizes and settings.

Facts only: what callers make of them (a capacity warning, a preflight refusal) is theirs.
"""

from __future__ import annotations

from typing import Any

from migrations_ops.engines.base import RewriteFacts, count_rows
from migrations_ops.engines.postgresql.sessions import Connections
from migrations_ops.errors import BadInput

SYSTEM_SCHEMA_FILTER = "n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
# Tables (plain and partitioned) visible on the search path, as Django names them; no views.
TABLES_SQL = (
    "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND pg_table_is_visible(c.oid) AND " + SYSTEM_SCHEMA_FILTER + " ORDER BY c.relname"
)


def write_counters(cursor: Any) -> dict[str, int]:
    """The cumulative statistics' rows inserted, updated and deleted per table. A session's writes show
    once it reports them (at the latest about a second after its commit); pg_stat_reset(), a crash or
    a recreated table starts them afresh."""
    cursor.execute("SELECT pg_stat_clear_snapshot()")  # fresh numbers, not this transaction's cache
    cursor.execute(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del FROM pg_stat_user_tables WHERE pg_table_is_visible(relid)"
    )
    return {name: int(total) for name, total in cursor.fetchall()}


def _show_server_version(conn) -> str:
    with conn.cursor() as cur:
        cur.execute("SHOW server_version")
        return cur.fetchone()[0]


class Introspection(Connections):
    """The catalog reads of the interface."""

    # --- identity ---
    def database_info(self) -> dict[str, Any]:
        cfg = self.settings_dict
        port = cfg.get("PORT")
        return {"name": self._dbname(), "host": cfg.get("HOST") or "localhost", "port": int(port) if port else 5432}

    def server_version(self) -> str:
        try:
            with self.side_connection() as conn:
                return _show_server_version(conn)
        except BadInput:
            if self.database_exists():
                raise
        with self.maintenance_connection() as conn:  # a restore target not created yet: same server, same version
            return _show_server_version(conn)

    # --- tables ---
    def table_names(self) -> list[str]:
        """Tables (plain and partitioned) visible on the search path, as Django names them; no views."""
        with self.connection.cursor() as cursor:
            cursor.execute(TABLES_SQL)
            return [row[0] for row in cursor.fetchall()]

    def special_relations(self) -> dict[str, str]:
        # Views and materialized views report every column nullable; foreign tables' constraints
        # live on the remote side. Partitioned tables ('p') are plain tables for this purpose.
        kinds = {"v": "PostgreSQL view", "m": "PostgreSQL materialized view", "f": "PostgreSQL foreign table"}
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind IN ('v', 'm', 'f') AND pg_table_is_visible(c.oid) AND " + SYSTEM_SCHEMA_FILTER
            )
            return {name: kinds[kind] for name, kind in cursor.fetchall()}

    def not_null_by_check(self, table: str) -> set[str]:
        # The server's own deparse of a one-column CHECK, compared with the same deparse of
        # "column IS NOT NULL" for that column: no reading of what someone wrote.
        with self.connection.cursor() as cursor:
            cursor.execute(
                """
                SELECT a.attname FROM pg_constraint c
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
                WHERE c.conrelid = to_regclass(%s) AND c.contype = 'c' AND c.convalidated
                  AND cardinality(c.conkey) = 1
                  AND pg_get_constraintdef(c.oid) = format('CHECK ((%%s IS NOT NULL))', quote_ident(a.attname))
                """,
                [self.connection.ops.quote_name(table)],
            )
            return {row[0] for row in cursor.fetchall()}

    # --- writes and locks of this session, and of all ---
    def own_row_changes(self) -> dict[str, int] | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT relname, n_tup_ins - n_tup_del FROM pg_stat_xact_user_tables "
                "WHERE pg_table_is_visible(relid) AND (n_tup_ins <> 0 OR n_tup_del <> 0)"
            )
            return {name: int(delta) for name, delta in cursor.fetchall()}

    def estimated_row_counts(self) -> dict[str, int]:
        # pg_class.reltuples (VACUUM/ANALYZE's), or the statistics' live rows for a table never analyzed.
        with self.connection.cursor() as cursor:
            cursor.execute(
                TABLES_SQL.replace(
                    "SELECT c.relname FROM pg_class c",
                    "SELECT c.relname, CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint "
                    "ELSE COALESCE(pg_stat_get_live_tuples(c.oid), 0) END FROM pg_class c",
                )
            )
            return {name: int(rows) for name, rows in cursor.fetchall()}

    def table_storage(self) -> dict[str, int] | None:
        with self.connection.cursor() as cursor:
            cursor.execute(TABLES_SQL.replace("SELECT c.relname FROM", "SELECT c.relname, c.relfilenode FROM"))
            return {name: int(node) for name, node in cursor.fetchall()}

    def write_counters(self) -> dict[str, int] | None:
        with self.connection.cursor() as cursor:
            return write_counters(cursor)

    def exclusively_locked_tables(self) -> list[str]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' "
                "AND l.mode = 'AccessExclusiveLock' AND c.relkind IN ('r', 'p')"
            )
            return sorted(row[0] for row in cursor.fetchall())

    # --- sizes and settings ---
    def database_size(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])

    def rewrite_facts(self, table: str) -> RewriteFacts | None:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.reltuples::bigint, pg_table_size(c.oid), pg_indexes_size(c.oid),"
                " pg_size_bytes(current_setting('shared_buffers')), pg_size_bytes(current_setting('max_wal_size')),"
                " current_setting('checkpoint_completion_target')::float"
                " FROM pg_class c WHERE c.oid = to_regclass(quote_ident(%s))",
                [table],
            )
            row = cursor.fetchone()
            if row is None:
                return None
            rows, *sizes = (int(value) for value in row[:5])
            if rows < 0:  # never vacuumed nor analyzed: no estimate, and such a table is small to count
                rows = count_rows(cursor, [table])[table]
        return RewriteFacts(table, rows, *sizes, checkpoint_completion_target=float(row[5]))

    # --- privileges ---
    def missing_privileges(self) -> list[str]:
        """What the role lacks to back up and migrate: read every table/sequence, create and alter."""
        problems = []
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.relname, c.relkind, has_table_privilege(c.oid, 'SELECT'),"
                " pg_has_role(c.relowner, 'USAGE') FROM pg_class c"
                " JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'S')"
            )
            for name, kind, can_read, owns in cursor.fetchall():
                what = "sequence" if kind == "S" else "table"
                if not can_read:
                    problems.append(f"SELECT on {what} {name}")
                if not owns and kind != "S":
                    problems.append(f"ownership of table {name} (needed to ALTER it)")
            cursor.execute("SELECT current_schema(), has_schema_privilege(current_schema(), 'CREATE')")
            schema, can_create = cursor.fetchone()
            if not can_create:
                problems.append(f"CREATE on schema {schema}")
        return problems
