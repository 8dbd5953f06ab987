"""SQLite: the online backup API, flock'ed lock files, PRAGMA checks.

A backup is a page-for-page copy taken with ``sqlite3.Connection.backup`` (never a copy of a live
file); a restore copies the backup file's pages into the live database the same way, which
replaces its whole content in one write transaction.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from migrations_ops.engines.base import (
    DatabaseEngine,
    DiskFull,
    DumpFile,
    DumpResult,
    LockOwner,
    Progress,
    RestoredContentMismatch,
    causes,
    count_rows,
    fsync_path,
    read_head,
    sha256_of,
)
from migrations_ops.errors import BadInput, LockHeld, OperationFailed

FORMAT = "sqlite3"
SQLITE_MAGIC = b"SQLite format 3\x00"
PAGES_PER_STEP = 1024
JOURNAL_SUFFIXES = ("-journal", "-wal", "-shm")  # the files SQLite may keep beside a database file
_BUSY_OR_LOCKED = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED


class _Blocked(Exception):
    pass


@contextmanager
def _copy_errors(blocked: str, failed: str) -> Iterator[None]:
    """A page copy's failures as the operator reads them: blocked too long, or SQLite's own error."""
    try:
        yield
    except _Blocked:
        raise OperationFailed(blocked) from None
    except sqlite3.Error as exc:
        if (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF == sqlite3.SQLITE_FULL:
            raise DiskFull(f"{failed}: {exc}") from None  # SQLite's word for ENOSPC
        raise OperationFailed(f"{failed}: {exc}") from None


def _primary_code(exc: BaseException) -> int | None:
    """SQLite's primary result code of a sqlite3 error (SQLITE_BUSY for SQLITE_BUSY_SNAPSHOT...); None
    for any other exception (Django's wrapper of a sqlite3 error has the error as its __cause__)."""
    if not isinstance(exc, sqlite3.Error):
        return None
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _readonly(path: Path | str) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=0.1)


# Tables, never views or SQLite's own sqlite_* internals.
_TABLES_SQL = (
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
)


def _tables(conn: sqlite3.Connection) -> list[str]:
    return [row[0] for row in conn.execute(_TABLES_SQL).fetchall()]


def _counts(conn: sqlite3.Connection) -> dict[str, int]:
    return count_rows(conn.cursor(), _tables(conn))


def _migrations(conn: sqlite3.Connection) -> dict[str, list[str]]:
    if "django_migrations" not in _tables(conn):
        return {}
    applied: dict[str, list[str]] = {}
    for app, name in conn.execute("SELECT app, name FROM django_migrations ORDER BY app, name"):
        applied.setdefault(app, []).append(name)
    return applied


def _copy(source: sqlite3.Connection, target: sqlite3.Connection, progress: Progress | None, timeout: float) -> None:
    """Page copy with a deadline while the other side is busy (Python's loop would wait forever)."""
    deadline = time.monotonic() + timeout

    def step(status: int, remaining: int, total: int) -> None:
        if progress:
            progress(total - remaining, total, "pages")
        if status in _BUSY_OR_LOCKED and time.monotonic() > deadline:
            raise _Blocked

    source.backup(target, pages=PAGES_PER_STEP, progress=step, sleep=0.05)


class SQLiteEngine(DatabaseEngine):
    vendor = "sqlite"

    def _path(self) -> Path:
        name = str(self.settings_dict.get("NAME") or "")
        if not name or name == ":memory:" or name.startswith("file:"):
            raise BadInput(f"cannot back up or restore the SQLite database {name or '(none)'!r}: give a file path")
        return Path(name)

    def _existing_path(self) -> Path:
        path = self._path()
        if not path.is_file():
            raise BadInput(f"SQLite database file {path} does not exist")
        return path

    def table_names(self) -> list[str]:
        """Tables (no views, no sqlite_ internals), sorted."""
        with self.connection.cursor() as cursor:
            cursor.execute(_TABLES_SQL)
            return [row[0] for row in cursor.fetchall()]

    def special_relations(self) -> dict[str, str]:
        # A virtual table (FTS5, R*Tree...) has an implicit rowid and untyped, nullable columns.
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT name, type, sql FROM sqlite_master WHERE type IN ('table', 'view')")
            rows = cursor.fetchall()
        special = {}
        for name, kind, sql in rows:
            if kind == "view":
                special[name] = "SQLite view"
            elif (sql or "").lstrip().upper().startswith("CREATE VIRTUAL TABLE"):
                special[name] = "SQLite virtual table"
        return special

    # --- identity ---
    def database_info(self) -> dict[str, Any]:
        return {"name": str(self._path()), "host": None, "port": None}

    def server_version(self) -> str:
        return sqlite3.sqlite_version

    def display_name(self) -> str:
        return self._path().name

    # --- tools ---
    def check_dump_tools(self) -> str:
        return f"sqlite3 backup API {sqlite3.sqlite_version}"

    def check_restore_tools(self, backup_format: str, backup_tool_version: str) -> None:
        if backup_format != FORMAT:
            raise BadInput(f"unknown SQLite backup format {backup_format!r}")

    def preferred_format(self) -> str:
        return FORMAT

    def file_suffix(self, backup_format: str) -> str:
        return ".sqlite3"

    @classmethod
    def detect_format(cls, path: Path) -> str | None:
        return FORMAT if read_head(path, 16) == SQLITE_MAGIC else None

    def file_facts(self, path: Path, backup_format: str) -> dict[str, str]:
        return {"database": path.name, "server_version": sqlite3.sqlite_version, "tool_version": "sqlite3 file"}

    # --- dump ---
    def dump(
        self, path: Path, backup_format: str, progress: Progress | None = None, lock_timeout: float = 5.0
    ) -> DumpResult:
        source_path = self._existing_path()
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        blocked = (
            f"backup blocked: another connection has held a write lock on {source_path.name} "
            f"for more than {lock_timeout:g}s"
        )
        try:
            with _copy_errors(blocked, "SQLite backup failed"):
                with closing(_readonly(source_path)) as source, closing(sqlite3.connect(path)) as target:
                    _copy(source, target, progress, lock_timeout)
                    tables = _counts(target)
                    migrations = _migrations(target)
        except BaseException:
            # The copy's own journal beside the temporary file (a failed copy, e.g. a full disk, leaves
            # it behind); the caller removes the temporary file itself.
            for suffix in JOURNAL_SUFFIXES:
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            raise
        fsync_path(path)
        return DumpResult(
            format=backup_format,
            sha256=sha256_of(path),
            size_bytes=path.stat().st_size,
            tool_version=self.check_dump_tools(),
            server_version=sqlite3.sqlite_version,
            tables=tables,
            migrations=migrations,
        )

    # --- verify ---
    def verify_file(self, path: Path, backup_format: str) -> list[str]:
        if backup_format != FORMAT:
            return [f"unknown SQLite backup format {backup_format!r}"]
        try:
            with closing(_readonly(path)) as conn:
                rows = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as exc:
            return [f"integrity_check: {exc}"]
        return [] if rows == ["ok"] else [f"integrity_check: {row}" for row in rows[:20]]

    # --- restore ---
    def restore(self, dump: DumpFile, progress: Progress | None = None, lock_timeout: float = 5.0) -> None:
        expected_tables = dump.tables
        target_path = self._path()
        self.connection.close()
        blocked = (
            f"restore blocked: another connection has held {target_path.name} open in a transaction for more "
            f"than {lock_timeout:g}s; nothing was changed"
        )
        with _copy_errors(blocked, f"SQLite restore failed, database {target_path.name} unchanged"):
            with closing(_readonly(dump.path)) as source:
                if expected_tables is not None and _counts(source) != expected_tables:
                    raise OperationFailed(
                        f"restore refused, database {target_path.name} unchanged: the backup's row counts differ "
                        "from its manifest"
                    )
                with closing(sqlite3.connect(target_path, timeout=0.1)) as target:
                    _copy(source, target, progress, lock_timeout)
                    restored = _counts(target)
        if expected_tables is not None and restored != expected_tables:
            raise RestoredContentMismatch("the restored database's row counts differ from the backup manifest")

    # --- other databases ---
    def scratch_settings(self, label: str) -> dict[str, Any]:
        settings = {**self.settings_dict, "OPTIONS": dict(self.settings_dict.get("OPTIONS") or {})}
        stem = self._path().stem[:40]
        settings["NAME"] = str(Path(tempfile.gettempdir()) / f"{stem}_{label}.sqlite3")
        return settings

    def database_exists(self) -> bool:
        return self._path().is_file()

    def create_database(self) -> None:
        path = self._path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise BadInput(f"cannot create SQLite database {path}: {exc.strerror}") from None

    def drop_database(self) -> None:
        self.connection.close()
        path = self._path()
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    # --- applying migrations ---
    @contextmanager
    def transactional_migration(self) -> Iterator[None]:
        """Django's SQLite schema editor refuses to run inside atomic() while foreign-key checks
        are on, and PRAGMA foreign_keys is a no-op inside a transaction: turn the checks off
        before the outer transaction and back on after it (foreign keys are checked after each
        migration instead)."""
        self.connection.ensure_connection()
        self.before_segment_transaction()
        try:
            yield
        finally:
            self.connection.enable_constraint_checking()

    def before_segment_transaction(self) -> None:
        """A non-atomic migration's own schema editor turns foreign-key checks back on when it ends,
        and the next atomic segment cannot turn them off once its transaction is open: off again."""
        if not self.connection.disable_constraint_checking():
            raise BadInput("cannot disable SQLite foreign-key checks (is a transaction open?)")

    def set_lock_timeout(self, seconds: float) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {max(1, int(seconds * 1000))}")

    def is_lock_timeout(self, exc: BaseException) -> bool:
        # By SQLite's error code, never the message: "table ..._clockedschedule already exists" says "locked".
        return any(_primary_code(e) in _BUSY_OR_LOCKED for e in causes(exc))

    def is_cancelled(self, exc: BaseException) -> bool:
        return any(_primary_code(e) == sqlite3.SQLITE_INTERRUPT for e in causes(exc))

    def cancel_running_statement(self) -> None:
        raw = self.connection.connection
        if raw is not None:
            raw.interrupt()

    def check_online_ready(self) -> None:
        raise BadInput(
            "safe_migrate --online needs PostgreSQL: SQLite lets one writer in at a time, so there is no "
            "application to keep writing while it migrates; run safe_migrate without --online (one transaction)"
        )

    def write_counters(self) -> None:
        """SQLite keeps no cumulative per-table write counters: writes since a backup cannot be told."""
        return None

    def database_size(self) -> int:
        path = self._path()
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())

    # --- the migration lock ---
    def lock_path(self) -> Path:
        return Path(str(self._path()) + ".migration-lock")

    @contextmanager
    def migration_lock(self, owner: LockOwner) -> Iterator[LockOwner]:
        path = self.lock_path()
        if not path.parent.is_dir():
            raise BadInput(f"database unreachable: the folder of the SQLite database, {path.parent}, does not exist")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise LockHeld(
                    f"another safe_migrate/restore_db holds the migration lock on {self._path().name}: "
                    f"{_describe_holder(fd)}; nothing was changed"
                ) from None
            # A file left by a dead process is simply taken over: its flock died with it.
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(owner.__dict__).encode(), 0)
            os.fsync(fd)
            try:
                yield owner
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)


def _describe_holder(fd: int) -> str:
    raw = os.pread(fd, 4096, 0)
    try:
        return LockOwner(**json.loads(raw)).describe()
    except (ValueError, TypeError):
        return "a process that has not yet written its name"
