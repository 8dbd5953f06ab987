"""SIGTERM/SIGINT and the server ending the sessions (pg_terminate_backend) in every phase: a prompt,
clean exit 1 with the database as before.

PostgreSQL with MIGRATION_LOCK_TIMEOUT=60s, so a wait on another session's lock is long: the run
must end because of the fault, not because the wait timed out.
"""

from __future__ import annotations

import os
import signal

import pytest

from migrations_ops import audit, backups
from migrations_ops.errors import ExitCode
from migrations_ops.online.executor import OnlineMigration
from migrations_ops.runner import SafeMigrateOptions, SafeMigration
from tests.reliability.harness import (
    Run,
    audit_events,
    backups_all_verify,
    fingerprint,
    fully_migrated,
    lock_is_free,
    pg,
    wait_for,
    waiting_on_lock,
)
from tests.test_migration_history import seed_baseline

LONG_WAIT = {"MIGRATION_LOCK_TIMEOUT": "60s"}
PROMPT_S = 10  # far below the 60 s lock timeout


def _end_session(db, pids):
    admin = pg(db)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", [pids])
    admin.close()


@pytest.mark.parametrize("fault", ["SIGTERM", "SIGINT", "terminate_backend"])
@pytest.mark.parametrize("held", ["preflight", "apply"])
def test_fault_while_waiting_on_an_application_lock(pg_baseline, tmp_path, settings, fault, held):
    """preflight: another session holds ACCESS EXCLUSIVE on subscriptions, so preflight's reads wait.
    apply: a plain read lock (an open transaction that read subscriptions) lets preflight and the
    backup through, and the plan's ALTER of subscriptions waits."""
    before = fingerprint(pg_baseline)
    app = pg(pg_baseline)
    with app.cursor() as cursor:
        if held == "preflight":
            cursor.execute("LOCK TABLE subscriptions IN ACCESS EXCLUSIVE MODE")
        else:
            cursor.execute("SELECT * FROM subscriptions LIMIT 1")
    try:
        run = Run(pg_baseline, tmp_path, settings, env=LONG_WAIT)
        pids = wait_for(lambda: waiting_on_lock(pg_baseline), what="safe_migrate waiting on the lock")
        if fault == "terminate_backend":
            _end_session(pg_baseline, pids)
        else:
            run.process.send_signal(getattr(signal, fault))
        code, err, took = run.finish(timeout=PROMPT_S)
    finally:
        app.rollback()
        app.close()
    assert code == ExitCode.FAILED, err
    assert took < PROMPT_S
    expected = "connection to the database was lost" if fault == "terminate_backend" else f"interrupted by {fault}"
    assert expected in err and "Traceback" not in err and err.count("\n") == 1, err
    assert fingerprint(pg_baseline) == before
    assert backups_all_verify() == []
    if held == "preflight":
        assert backups.list_backups() == []  # stopped before the backup


@pytest.mark.parametrize(
    ("event", "sig"),
    [
        ("safe_migrate.plan", "SIGTERM"),
        ("backup.start", "SIGTERM"),
        ("backup.end", "SIGINT"),
        ("safe_migrate.backup", "SIGTERM"),
        ("safe_migrate.migration", "SIGINT"),
        ("safe_migrate.validate", "SIGTERM"),
    ],
)
def test_signal_in_each_phase_ends_cleanly(migrated_pair, tmp_path, settings, event, sig):
    """The signal is sent the moment the phase's audit line appears: the run ends at once, either
    rolled back (exit 1, the database exactly as before) or, past COMMIT, applied (exit 0)."""
    db = migrated_pair
    before = fingerprint(db)
    run = Run(db, tmp_path, settings)
    run.wait_for_event(event)
    run.process.send_signal(getattr(signal, sig))
    code, err, took = run.finish(timeout=PROMPT_S)
    assert "Traceback" not in err
    if code == ExitCode.FAILED:
        assert f"interrupted by {sig}" in err, err
        assert fingerprint(db) == before
    else:
        assert code == ExitCode.OK, err
        assert fully_migrated(db)
    assert backups_all_verify() == []
    assert lock_is_free(db)


class _SignalAfterCommit(SafeMigration):
    """SIGTERM to itself the moment the apply phase returns: after the final COMMIT, before the
    migration lock is released (CI once caught a real signal in that window: exit 1 "interrupted",
    the database fully migrated)."""

    def _migrate(self, plan):
        super()._migrate(plan)
        os.kill(os.getpid(), signal.SIGTERM)


class _SignalAfterOnlineRun(OnlineMigration):
    """SIGTERM once the online run is validated and its checkpoint closed (during pruning)."""

    def _prune(self):
        os.kill(os.getpid(), signal.SIGTERM)
        super()._prune()


@pytest.mark.parametrize(
    ("vendor", "runner"),
    [("postgresql", _SignalAfterCommit), ("sqlite", _SignalAfterCommit), ("postgresql", _SignalAfterOnlineRun)],
)
def test_a_signal_after_the_outcome_is_decided_never_relabels_it(request, tmp_path, settings, vendor, runner):
    """Exit 1 says "the database is as before": a signal after COMMIT must leave the run applied."""
    from tests.conftest import _scratch

    db = _scratch(request, vendor, "baseline")
    seed_baseline(db)
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    summary = runner(db.alias, SafeMigrateOptions(online=runner is _SignalAfterOnlineRun)).run()
    assert summary.exit_code == ExitCode.OK, summary.error
    assert summary.status in ("applied", "online_applied")
    assert fully_migrated(db)
    end = [event for event in audit.read_events() if event["event"] == "safe_migrate.end"][-1]
    assert end["signals"] == ["SIGTERM"] and end["exit_code"] == 0
    assert lock_is_free(db)


@pytest.fixture
def pg_baseline(request):
    from tests.conftest import _scratch

    db = _scratch(request, "postgresql", "baseline")
    seed_baseline(db)
    return db


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated_pair(request):
    """A seeded baseline of each engine: the upgrade (30 migrations) is the plan."""
    from tests.conftest import _scratch

    db = _scratch(request, request.param, "baseline")
    seed_baseline(db)
    return db


def _sessions_of_the_run(db) -> list[int]:
    """Every client backend of the scratch database but the asking one: the test closed its own,
    so these are safe_migrate's (its migration work, pg_dump's, the migration lock's)."""
    admin = pg(db)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            return [row[0] for row in cursor.fetchall()]
    finally:
        admin.close()


@pytest.mark.parametrize(
    "event",
    [
        "safe_migrate.plan",
        "backup.start",
        "backup.end",
        "safe_migrate.backup",
        "safe_migrate.migration",
        "safe_migrate.validate",
    ],
)
def test_the_server_ending_the_sessions_in_each_phase(pg_baseline, tmp_path, settings, event):
    """pg_terminate_backend of every session of the run the moment the phase's audit line appears:
    exit 1 "connection to the database was lost" and the exact pre-state, or exit 0 past COMMIT;
    prompt, the lock free, every backup verifying."""
    from django.db import connections

    db = pg_baseline
    before = fingerprint(db)
    connections[db.alias].close()
    run = Run(db, tmp_path, settings, env=LONG_WAIT)
    seen = wait_for(
        lambda: event in {e["event"] for e in audit_events(run.log)} or (run.process.poll() is not None and "exited"),
        60,
        event,
        0.002,
    )
    assert seen is True, run.process.communicate()
    run.process.send_signal(signal.SIGSTOP)  # held at that point while its sessions are found and ended
    try:
        ended = _sessions_of_the_run(db)
        _end_session(db, ended)
    finally:
        run.process.send_signal(signal.SIGCONT)
    code, err, took = run.finish(timeout=PROMPT_S)
    assert ended, "safe_migrate had no session to end"
    assert took < PROMPT_S
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    if code == ExitCode.FAILED:
        assert len(lines) == 1 and "connection to the database was lost" in lines[0], err
        assert fingerprint(db) == before
    else:
        assert code == ExitCode.OK, err
        assert fully_migrated(db)
    assert backups_all_verify() == []
    assert lock_is_free(db)
