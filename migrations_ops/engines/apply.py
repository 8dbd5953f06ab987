"""What applying migrations needs from each engine (used by runner.py).

Mixed into the engine classes of postgresql.py and sqlite.py.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from migrations_ops.engines.base import parse_lock_timeout
from migrations_ops.errors import BadInput


def duration_ms(value: str) -> int:
    """'5s' -> 5000, '250ms' -> 250, '1min' -> 60000, '3' -> 3000 (seconds)."""
    try:
        return int(parse_lock_timeout(value) * 1000)
    except ValueError as exc:
        raise BadInput(f"MIGRATION_LOCK_TIMEOUT: {exc}") from None


def _walk_causes(exc: BaseException | None) -> Iterator[BaseException]:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def check_free_space(directory: Path, needed_bytes: int) -> None:
    """BadInput unless `directory` (created if missing) has `needed_bytes` free."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise BadInput(
            f"not enough free space in {directory}: {free / 1e6:.1f} MB free, "
            f"{needed_bytes / 1e6:.1f} MB needed (twice the database size)"
        )


class PostgreSQLApplyMixin:
    def transactional_migration(self) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()

    def set_lock_timeout(self, value: str) -> None:
        """lock_timeout for every statement of the current transaction (RunPython/RunSQL too)."""
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('lock_timeout', %s, true)", [f"{duration_ms(value)}ms"])

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return any(getattr(e, "pgcode", None) == "55P03" for e in _walk_causes(exc))

    def cancel_running_statement(self) -> None:
        raw = self.connection.connection
        if raw is not None and not raw.closed:
            raw.cancel()

    def exclusively_locked_tables(self) -> list[str]:
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                "WHERE l.pid = pg_backend_pid() AND l.locktype = 'relation' "
                "AND l.mode = 'AccessExclusiveLock' AND c.relkind IN ('r', 'p')"
            )
            return sorted(row[0] for row in cursor.fetchall())

    def database_size(self) -> int:
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT pg_database_size(current_database())")
            return int(cursor.fetchone()[0])

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

    def check_ready_for_migration(self, backup_dir: Path) -> None:
        self.check_dump_tools()
        missing = self.missing_privileges()
        if missing:
            raise BadInput("the database role lacks privileges: " + ", ".join(missing))
        check_free_space(Path(backup_dir), 2 * self.database_size())


class SQLiteApplyMixin:
    @contextlib.contextmanager
    def transactional_migration(self) -> Iterator[None]:
        """Django's SQLite schema editor refuses to run inside atomic() while foreign-key checks
        are on, and PRAGMA foreign_keys is a no-op inside a transaction: turn the checks off
        before the outer transaction and back on after it (foreign keys are checked after each
        migration instead)."""
        self.connection.ensure_connection()
        if not self.connection.disable_constraint_checking():
            raise BadInput("cannot disable SQLite foreign-key checks (is a transaction open?)")
        try:
            yield
        finally:
            self.connection.enable_constraint_checking()

    def set_lock_timeout(self, value: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {duration_ms(value)}")

    def is_lock_timeout(self, exc: BaseException) -> bool:
        return any(isinstance(e, sqlite3.OperationalError) and "locked" in str(e) for e in _walk_causes(exc))

    def cancel_running_statement(self) -> None:
        raw = self.connection.connection
        if raw is not None:
            raw.interrupt()

    def exclusively_locked_tables(self) -> list[str]:
        return []  # SQLite locks the whole file, not tables

    def database_size(self) -> int:
        path = Path(self.connection.settings_dict["NAME"])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    def check_ready_for_migration(self, backup_dir: Path) -> None:
        check_free_space(Path(backup_dir), 2 * self.database_size())
