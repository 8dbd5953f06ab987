"""Fault-injection helpers: start safe_migrate as an operator would, wait for a phase, check the end state.

Every scenario takes the database's state before (schema + every table's content checksum, which
includes django_migrations), provokes a fault, and asserts the run ends with the contract's exit
code, promptly, with the database entirely at the pre-state (or entirely migrated), no stale
migration lock and every listed backup still verifying.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg2
from django.db import connections

from migrations_ops import audit, backups
from migrations_ops.status import pending_migrations
from tests.dbs import manage_env, start_manage
from tests.test_safe_migrate import fingerprint

__all__ = [
    "fingerprint",
    "lock_is_free",
    "Run",
    "audit_events",
    "backups_all_verify",
    "pg",
    "wait_for",
    "waiting_on_lock",
]


def pg(db):
    """A psycopg2 connection of an application session (autocommit off, as an app holds locks)."""
    return psycopg2.connect(db.url.replace("postgres://", "postgresql://"))


def wait_for(
    condition: Callable[[], object], timeout: float = 60, what: str = "condition", interval: float = 0.02
) -> object:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def waiting_on_lock(db) -> list[int]:
    """Backends of this database waiting for a heavyweight lock (our tool, queued behind the app)."""
    admin = pg(db)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return [row[0] for row in cursor.fetchall()]
    finally:
        admin.close()


def audit_events(log: Path) -> list[dict]:
    """The run's complete audit events so far (read while the run may still be writing one)."""
    return audit.read_events(log)


def backups_all_verify() -> list[str]:
    """Names of listed backups that fail verification (empty: all verify)."""
    return [m.name for m in backups.list_backups() if not backups.verify_backup(m.name).ok]


class Run:
    """``manage.py safe_migrate`` in a subprocess with its own BACKUP_DIR and MIGRATION_LOG."""

    def __init__(
        self, db, tmp_path: Path, settings, *args: str, env: dict | None = None, backup_dir: Path | None = None
    ) -> None:
        self.db = db
        self.log = tmp_path / "log" / "migration.log"
        # The test process reads the same backups and log as the child.
        settings.BACKUP_DIR = backup_dir or tmp_path / "backups"
        settings.MIGRATION_LOG = self.log
        env = manage_env(BACKUP_DIR=str(settings.BACKUP_DIR), MIGRATION_LOG=str(self.log), **(env or {}))
        self.process = start_manage(db.url, "safe_migrate", *args, "--noinput", env=env)
        self.started = time.monotonic()

    def wait_for_event(self, event: str, timeout: float = 60) -> None:
        def seen():
            assert self.process.poll() is None or any(e["event"] == event for e in audit_events(self.log)), (
                self.process.communicate()
            )
            return any(e["event"] == event for e in audit_events(self.log))

        wait_for(seen, timeout, event)

    def finish(self, timeout: float = 30) -> tuple[int, str, float]:
        """Exit code, stderr and seconds taken from now; fails (after killing it) when it hangs."""
        since = time.monotonic()
        try:
            _out, err = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise AssertionError(f"safe_migrate did not exit within {timeout}s") from None
        connections[self.db.alias].close()
        return self.process.returncode, err, time.monotonic() - since


def fully_migrated(db) -> bool:
    return not pending_migrations(db.alias)


def lock_is_free(db) -> bool:
    """No stale migration lock: this process can take it at once (and releases it)."""
    from migrations_ops.engines import get_engine
    from migrations_ops.engines.base import current_owner
    from migrations_ops.errors import LockHeld

    try:
        with get_engine(db.alias).migration_lock(current_owner("test")):
            return True
    except LockHeld:
        return False
