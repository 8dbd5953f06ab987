"""The engine interface: what migrations_ops needs from a database, whatever the vendor.

An engine knows nothing of commands, output formatting or the domain. Every vendor difference
(dump, restore, file verification, scratch databases, tool versions, the migration lock) lives in
a subclass; callers never ask which vendor they talk to.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

from migrations_ops.errors import OperationFailed

# progress(done, total, item): called as a dump or restore advances (tables, or pages on SQLite).
Progress = Callable[[int, int, str], None]

HASH_CHUNK = 1 << 20


class RestoredContentMismatch(OperationFailed):
    """A restore replaced the database's content, but it does not match the backup (caller recovers)."""


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


def parse_lock_timeout(value: str | int | float) -> float:
    """'5s', '500ms', '2min', '3' (seconds) -> seconds."""
    if isinstance(value, int | float):
        return float(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|min|h)?\s*", str(value))
    if not match:
        raise ValueError(f"invalid timeout {value!r}: expected e.g. 5s, 500ms, 2min")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "min": 60.0, "h": 3600.0}[unit]


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    def row_counts(self) -> dict[str, int]:
        """Exact row count of every table, in one round trip."""
        names = self.table_names()
        if not names:
            return {}
        qn = self.connection.ops.quote_name
        sql = " UNION ALL ".join(f"SELECT {i}, COUNT(*) FROM {qn(name)}" for i, name in enumerate(names))
        with self.connection.cursor() as cursor:
            cursor.execute(sql)
            counts = dict(cursor.fetchall())
        return {name: int(counts[i]) for i, name in enumerate(names)}

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

    def verify_file(self, path: Path, backup_format: str) -> list[str]:
        """Readability problems of a dump file (empty when the tools can read all of it)."""
        raise NotImplementedError

    def restore(
        self,
        path: Path,
        backup_format: str,
        expected_tables: dict[str, int] | None = None,
        progress: Progress | None = None,
        lock_timeout: float = 5.0,
    ) -> None:
        """Atomically replace the whole content of this database with the dump at ``path``.

        Raises OperationFailed (database unchanged) when the restore fails or other sessions block it
        for longer than ``lock_timeout`` seconds; the new content must hold ``expected_tables`` rows.
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

    # --- validation fallback ---
    def foreign_key_violations(self) -> list[str]:
        """Rows whose foreign keys point nowhere, one line per violated constraint."""
        raise NotImplementedError

    # --- the migration lock ---
    @contextmanager
    def migration_lock(self, owner: LockOwner) -> Iterator[LockOwner]:
        """Hold the database's migration lock for the block; LockHeld (exit 3) names another holder."""
        raise NotImplementedError
        yield owner  # pragma: no cover


def current_owner(command: str = "") -> LockOwner:
    """This process as a migration-lock owner."""
    import socket
    from datetime import UTC, datetime

    return LockOwner(
        pid=os.getpid(),
        host=socket.gethostname(),
        since=datetime.now(UTC).isoformat(timespec="seconds"),
        command=command,
    )
