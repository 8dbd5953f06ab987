"""The engine interface: what migrations_ops needs from a database, whatever the vendor.

An engine knows nothing of commands, output formatting or the domain. Every vendor difference
(dump, restore, file verification, scratch databases, tool versions, the migration lock) lives in
a subclass; callers never ask which vendor they talk to.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from migrations_ops.engines.processes import HASH_CHUNK
from migrations_ops.errors import BadInput, OperationFailed

# progress(done, total, item): called as a dump or restore advances (tables, or pages on SQLite).
Progress = Callable[[int, int, str], None]


class RestoredContentMismatch(OperationFailed):
    """A restore replaced the database's content, but it does not match the backup (caller recovers)."""


class DiskFull(OperationFailed):
    """The file system a file was being written to ran out of space (an engine's own word for ENOSPC)."""


def is_disk_full(exc: BaseException | None) -> bool:
    """Whether ``exc`` or what it was raised from is the file system running out of space."""
    return any(
        isinstance(cause, DiskFull) or (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT))
        for cause in causes(exc)
    )


@dataclass
class DumpResult:
    """What an engine reports about a dump it has written (and fsynced) to a path."""

    format: str
    sha256: str
    size_bytes: int
    tool_version: str
    server_version: str
    tables: dict[str, int] = field(default_factory=dict)  # exact rows per table, same snapshot as the dump
    migrations: dict[str, list[str]] = field(default_factory=dict)  # django_migrations, same snapshot
    # write_counters() read just before the snapshot (None where the engine keeps none): a write in
    # between counts as one since the backup though the backup holds it, so a restore prompt may
    # overstate what a restore discards, never understate it.
    write_counters: dict[str, int] | None = None


@dataclass(frozen=True)
class RewriteFacts:
    """What the server says about rewriting one table whole: its rows and sizes, and the server settings
    that bound such a rewrite. Facts only: capacity.py judges whether the settings carry it."""

    table: str
    rows: int
    table_bytes: int
    index_bytes: int
    shared_buffers: int
    max_wal_size: int
    checkpoint_completion_target: float = 0.9


@dataclass(frozen=True)
class DumpFile:
    """A dump on disk as an engine restores it: where, in which format, and the rows it must yield."""

    path: Path
    format: str
    tables: dict[str, int] | None = None  # None: do not check the restored row counts


@dataclass
class LockOwner:
    """Who holds (or wants) the migration lock."""

    pid: int
    host: str
    since: str  # ISO 8601 UTC
    command: str = ""

    def describe(self) -> str:
        what = f" ({self.command})" if self.command else ""
        return f"pid {self.pid} on {self.host} since {self.since}{what}"


def count_rows(cursor: Any, tables: list[str]) -> dict[str, int]:
    """Exact row count of each of ``tables`` through a DB-API ``cursor``, in one statement
    (``SELECT i, count(*)`` per table, UNION ALL): a Django cursor, or a driver's own on a
    connection that reads a dump's snapshot."""
    if not tables:
        return {}
    cursor.execute(
        " UNION ALL ".join(
            f'SELECT {index}, count(*) FROM "{name.replace(chr(34), chr(34) * 2)}"' for index, name in enumerate(tables)
        )
    )
    counts = dict(cursor.fetchall())
    return {name: int(counts[index]) for index, name in enumerate(tables)}


def check_free_space(directory: Path, needed_bytes: int) -> None:
    """BadInput unless ``directory`` (created if missing) has ``needed_bytes`` free."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    free = shutil.disk_usage(directory).free
    if free < needed_bytes:
        raise BadInput(
            f"not enough free space in {directory}: {free / 1e6:.1f} MB free, "
            f"{needed_bytes / 1e6:.1f} MB needed (twice the database size)"
        )


def causes(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc`` and every exception it was raised from or during, once each."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_head(path: Path, size: int = 4096) -> bytes:
    """The first ``size`` bytes of a file (to recognise its format)."""
    with open(path, "rb") as handle:
        return handle.read(size)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class DatabaseEngine:
    """Base class; subclasses implement the vendor-specific parts."""

    vendor: str = ""

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    @property
    def settings_dict(self) -> dict[str, Any]:
        return self.connection.settings_dict

    # --- introspection shared by backups (manifest) and validation (`tables` map) ---
    def table_names(self) -> list[str]:
        """Application tables (every table of the database's application schema), sorted."""
        with self.connection.cursor() as cursor:
            return sorted(self.connection.introspection.table_names(cursor))

    def special_relations(self) -> dict[str, str]:
        """Relations a model may point at whose columns do not declare what a plain table's do
        (views, virtual or foreign tables), by name, with their kind in words."""
        raise NotImplementedError

    def not_null_by_check(self, table: str) -> set[str]:
        """Columns of ``table`` that a validated CHECK (column IS NOT NULL) keeps non-NULL although the
        column itself allows NULL (an online window on its way to SET NOT NULL). None here."""
        return set()

    def row_counts(self) -> dict[str, int]:
        """Exact row count of every table, in one round trip."""
        names = self.table_names()
        with self.connection.cursor() as cursor:
            return count_rows(cursor, names)

    def estimated_row_counts(self) -> dict[str, int]:
        """Every table's row count as the catalog estimates it (here: counted)."""
        return self.row_counts()

    # --- identity ---
    def database_info(self) -> dict[str, Any]:
        """Name, host and port of the database (never a password)."""
        raise NotImplementedError

    def server_version(self) -> str:
        raise NotImplementedError

    def display_name(self) -> str:
        """What the operator types to confirm a restore (the database name, or the SQLite file name)."""
        return str(self.settings_dict["NAME"])

    # --- dump / verify / restore ---
    def check_dump_tools(self) -> str:
        """Raise BadInput unless the dump tools exist and are new enough; return their version."""
        raise NotImplementedError

    def check_restore_tools(self, backup_format: str, backup_tool_version: str) -> None:
        """Raise BadInput unless this machine can restore a backup of that format and tool version."""
        raise NotImplementedError

    def file_suffix(self, backup_format: str) -> str:
        raise NotImplementedError

    def preferred_format(self) -> str:
        raise NotImplementedError

    def dump(
        self, path: Path, backup_format: str, progress: Progress | None = None, lock_timeout: float = 5.0
    ) -> DumpResult:
        """Write a consistent dump to ``path`` (fsynced, mode 0600) and describe it."""
        raise NotImplementedError

    @classmethod
    def detect_format(cls, path: Path) -> str | None:
        """The backup format of a file made without us (a dump from the old runbook), or None."""
        return None

    def file_facts(self, path: Path, backup_format: str) -> dict[str, str]:
        """What a dump file says about itself: ``database``, ``server_version``, ``tool_version``."""
        raise NotImplementedError

    def verify_file(self, path: Path, backup_format: str) -> list[str]:
        """Readability problems of a dump file (empty when the tools can read all of it)."""
        raise NotImplementedError

    def restore(self, dump: DumpFile, progress: Progress | None = None, lock_timeout: float = 5.0) -> None:
        """Atomically replace the whole content of this database with the dump at ``path``.

        Raises OperationFailed (database unchanged) when the restore fails or other sessions block it
        for longer than ``lock_timeout`` seconds; the new content must hold ``dump.tables`` rows.
        """
        raise NotImplementedError

    def terminate_other_sessions(self) -> list[str]:
        """End every other session on this database; describe the ones ended."""
        return []

    # --- databases other than this one (scratch copies, restore targets) ---
    def scratch_settings(self, label: str) -> dict[str, Any]:
        """Settings of a new, unused database ``<db>_<label>`` beside this one (not created yet)."""
        raise NotImplementedError

    def database_exists(self) -> bool:
        raise NotImplementedError

    def create_database(self) -> None:
        """Create this (missing) database, empty."""
        raise NotImplementedError

    def drop_database(self) -> None:
        """Drop this database (no error when it does not exist)."""
        raise NotImplementedError

    # --- applying migrations (runner.py) ---
    def transactional_migration(self) -> contextlib.AbstractContextManager:
        """Wrap the one outer transaction of a plan (whatever the vendor needs around it)."""
        return contextlib.nullcontext()

    def before_segment_transaction(self) -> None:
        """Called before each atomic segment opens its transaction, inside ``transactional_migration``:
        re-establish what a non-atomic migration run before it may have undone. Nothing by default."""

    def set_lock_timeout(self, seconds: float) -> None:
        """Bound every lock wait of the current transaction (RunPython/RunSQL included)."""
        raise NotImplementedError

    def is_lock_timeout(self, exc: BaseException) -> bool:
        """Whether ``exc`` (or what caused it) is a lock wait that timed out (worth a retry)."""
        raise NotImplementedError

    def is_connection_lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the session is gone (ended by the server, network down)."""
        return False

    def is_cancelled(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a statement cancelled by us (an interrupt) or by a statement timeout."""
        return False

    def is_integrity_error(self, exc: BaseException) -> bool:
        """Whether the data refused ``exc``'s statement (a constraint the rows do not satisfy)."""
        return False

    def cannot_continue(self, exc: BaseException) -> bool:
        """An error that says nothing about the data: the work was blocked, cancelled or cut off.
        Validation must not report it as a failed check (and carry on into the next wait)."""
        return self.is_transient(exc) or self.is_connection_lost(exc) or self.is_cancelled(exc)

    def cancel_running_statement(self) -> None:
        """Ask the server to stop the statement running on this connection (thread-safe: an
        interrupt calls it from the watcher thread while the main thread waits in the driver)."""
        raise NotImplementedError

    def hardened_session(self, lock_timeout: float) -> contextlib.AbstractContextManager:
        """For the block, every (re)connection of this alias bounds its lock waits to
        ``lock_timeout`` seconds and notices a dead server or network (keepalives)."""
        return contextlib.nullcontext()

    def lock_tables(self, tables: list[str]) -> None:
        """Take the exclusive locks a plan's schema changes need on existing ``tables`` up front, in one
        fixed order, inside the current transaction: the plan then cannot deadlock with application
        transactions that lock the same tables in another order (no-op where locks are per database)."""

    def own_row_changes(self) -> dict[str, int] | None:
        """This session's row counters per table (added minus removed, other clients' writes excluded),
        as the server holds them: the open transaction's, plus earlier transactions' the server has not
        taken into its statistics yet (PostgreSQL takes them about once a second, never inside a
        transaction). Compare two readings inside one transaction: own_row_changes_since. None where
        the engine cannot tell."""
        return None

    def own_row_changes_since(self, start: dict[str, int] | None) -> dict[str, int] | None:
        """Rows this transaction added (+) or removed (-) per table since ``start``, own_row_changes()
        read inside it at its beginning (read there, not before BEGIN: the counters may be taken between)."""
        now = self.own_row_changes()
        if now is None or start is None:
            return None
        return {table: count - start.get(table, 0) for table, count in now.items() if count != start.get(table, 0)}

    def table_storage(self) -> dict[str, int] | None:
        """Each table's storage identity (PostgreSQL: relfilenode), which TRUNCATE and a rewriting ALTER
        replace: own_row_changes does not see the rows a TRUNCATE removes. None where the engine cannot tell."""
        return None

    def write_counters(self) -> dict[str, int] | None:
        """Cumulative rows inserted, updated or deleted per table by every session (None where the
        engine keeps no such counters): the difference between two readings is the writes between.
        Recorded in a backup's manifest; ``backups.writes_since`` compares a reading with it."""
        raise NotImplementedError

    def exclusively_locked_tables(self) -> list[str]:
        """Tables this session holds an ACCESS EXCLUSIVE lock on (empty where locks are not per table)."""
        return []

    def database_size(self) -> int:
        """Bytes the database occupies (for the free-space preflight)."""
        raise NotImplementedError

    def check_ready_for_migration(self, backup_dir: Path, dump: bool = True) -> None:
        """BadInput unless a backup and a migration can run: tools, privileges, free space (the dump's
        tools and space only when the safety point is a dump)."""
        if dump:
            check_free_space(Path(backup_dir), 2 * self.database_size())

    def rewrite_facts(self, table: str) -> RewriteFacts | None:
        """The sizes of ``table`` and its indexes beside the server settings that bound rewriting it
        whole (capacity.py judges them); None where the server has no such settings, or the table does
        not exist."""
        return None

    # --- online migrations (migrations_ops/online) ---
    def check_online_ready(self) -> None:
        """BadInput unless ``safe_migrate --online`` can run here (it needs concurrent writers)."""
        raise BadInput(f"safe_migrate --online is not supported on {self.vendor}")

    def is_transient(self, exc: BaseException) -> bool:
        """A conflict worth retrying after a pause: a lock wait that timed out, or a deadlock."""
        return self.is_lock_timeout(exc)

    def plan_for_small_batches(self) -> None:
        """For the current transaction: plan joins as index lookups (a batch reads few rows; hashing a
        whole joined table per batch makes a backfill quadratic)."""

    def commit_without_flush(self) -> None:
        """For the current transaction: its commit does not wait for its WAL to reach disk. For work
        that is redone when lost: a backfill batch, whose checkpoint commits with it."""

    def replica_lag_seconds(self) -> float:
        """How far the furthest standby's replay is behind (0 without standbys)."""
        return 0.0

    def index_state(self, name: str) -> str | None:
        """'valid', 'invalid' (a failed concurrent build) or None (no such index)."""
        return None

    # --- what tells an online backfill to back off (online/governor.py) ---
    def lock_waiters(self, table: str) -> int:
        """Sessions queued for a lock on ``table`` or on one of its rows, other than ours."""
        return 0

    def oldest_transaction_s(self) -> float:
        """How long the oldest other transaction holding back vacuum (an xmin) has been open."""
        return 0.0

    def wal_position(self) -> int | None:
        """The server's WAL write position in bytes (None where there is no WAL to watch)."""
        return None

    def active_sessions(self) -> int | None:
        """Client sessions running a statement now, server-wide, other than ours (None: not known)."""
        return None

    def next_transaction_id(self) -> int | None:
        """The id the server will hand the next transaction that writes (None: not known): its growth is
        the rate of writing transactions, server-wide, with no statistics delay."""
        return None

    def checkpoint_spacing(self) -> tuple[int, float] | None:
        """(WAL bytes, seconds): the server forces a checkpoint when that much WAL was written since the
        last one began, else starts one after that many seconds (None: no checkpoints to spare)."""
        return None

    # --- the migration lock ---
    @contextmanager
    def migration_lock(self, owner: LockOwner) -> Iterator[LockOwner]:
        """Hold the database's migration lock for the block; LockHeld (exit 3) names another holder."""
        raise NotImplementedError
        yield owner  # pragma: no cover


def current_owner(command: str = "") -> LockOwner:
    """This process as a migration-lock owner."""
    return LockOwner(
        pid=os.getpid(),
        host=socket.gethostname(),
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command,
    )
