"""Fault-injection helpers: start safe_migrate as an operator would, wait for a phase, check the end state.

Every scenario takes the database's state before (schema + every table's content checksum, which
includes django_migrations), provokes a fault, and asserts the run ends with the contract's exit
code, promptly, with the database entirely at the pre-state (or entirely migrated), no stale
migration lock and every listed backup still verifying.
"""

from __future__ import annotations

import io
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path

import psycopg2
from django.core.management import get_commands, load_command_class
from django.db import connections

from migrations_ops import audit, backups
from migrations_ops.errors import ExitCode
from migrations_ops.status import pending_migrations
from tests.dbs import manage_env, start_manage
from tests.helpers import fingerprint

__all__ = [
    "lock_is_free",
    "Run",
    "as_default",
    "assert_pre_or_post_state",
    "audit_events",
    "backups_all_verify",
    "invoke",
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
    """``manage.py safe_migrate`` (or ``command``) in a subprocess with its own BACKUP_DIR and
    MIGRATION_LOG (two runs given the same tmp_path share them)."""

    def __init__(
        self,
        db,
        tmp_path: Path,
        settings,
        *args: str,
        env: dict | None = None,
        backup_dir: Path | None = None,
        command: str = "safe_migrate",
    ) -> None:
        self.db = db
        self.log = tmp_path / "log" / "migration.log"
        # The test process reads the same backups and log as the child.
        settings.BACKUP_DIR = backup_dir or tmp_path / "backups"
        settings.MIGRATION_LOG = self.log
        env = manage_env(BACKUP_DIR=str(settings.BACKUP_DIR), MIGRATION_LOG=str(self.log), **(env or {}))
        self.process = start_manage(db.url, command, *args, "--noinput", env=env)
        self.started = time.monotonic()

    def wait_for_event(self, event: str, timeout: float = 60) -> None:
        def seen():
            assert self.process.poll() is None or any(e["event"] == event for e in audit_events(self.log)), (
                self.process.communicate()
            )
            return any(e["event"] == event for e in audit_events(self.log))

        wait_for(seen, timeout, event)

    def stop_at_event(self, event: str, timeout: float = 60) -> None:
        """SIGSTOP the run the moment ``event``'s audit line appears (held there until ``resume``)."""

        def seen():
            return event in {e["event"] for e in audit_events(self.log)} or (
                self.process.poll() is not None and "exited"
            )

        assert wait_for(seen, timeout, event, 0.002) is True, self.process.communicate()
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def signal_at_event(self, event: str, sig: signal.Signals, timeout: float = 60) -> None:
        """``sig`` the moment ``event``'s audit line appears (stopped first, so it lands right there)."""
        self.stop_at_event(event, timeout)
        try:
            self.process.send_signal(sig)
        finally:
            self.resume()

    def events(self) -> list[dict]:
        """This run's own audit events (others may share the log)."""
        return [e for e in audit_events(self.log) if e.get("pid") == self.process.pid]

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


def assert_pre_or_post_state(db, before: dict, code: int, err: str, failure: str) -> None:
    """A run that ended on a fault: exit 1 with ``failure`` in its one error line and the database
    exactly the pre-state, or exit 0 past COMMIT and fully migrated; either way no traceback, the
    migration lock free and every listed backup verifying."""
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if code == ExitCode.FAILED:
        assert len(lines) == 1 and failure in lines[0], err
        assert fingerprint(db) == before
    else:
        assert code == ExitCode.OK, err
        assert fully_migrated(db)
    assert backups_all_verify() == []
    assert lock_is_free(db)


@contextmanager
def as_default(db) -> Iterator[None]:
    """``db`` as Django's ``default`` database: what the commands operate on when run in-process."""
    saved = connections.settings["default"]
    connections["default"].close()
    connections.settings["default"] = dict(connections.settings[db.alias])
    if hasattr(connections._connections, "default"):
        delattr(connections._connections, "default")
    try:
        yield
    finally:
        connections["default"].close()
        if hasattr(connections._connections, "default"):
            delattr(connections._connections, "default")
        connections.settings["default"] = saved


def invoke(name: str, *argv: str) -> tuple[int, str, str]:
    """``manage.py name argv...`` in this process, on ``default``: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    code = 0
    try:
        with redirect_stdout(out), redirect_stderr(err):
            command = load_command_class(get_commands()[name], name)
            try:
                command.run_from_argv(["manage.py", name, *argv])
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
    finally:
        # From the command line the guard leaves SIGINT/SIGTERM ignored until exit: not in pytest.
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        connections["default"].close()
    return code, out.getvalue(), err.getvalue()
