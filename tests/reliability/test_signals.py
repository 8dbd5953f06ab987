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
    assert_pre_or_post_state,
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
        ("prune", "SIGTERM"),  # an older pre-migrate backup is being removed (BACKUP_KEEP=1)
    ],
)
def test_signal_in_each_phase_ends_cleanly(migrated_pair, tmp_path, settings, event, sig):
    """The signal is sent the moment the phase's audit line appears: the run ends at once, either
    rolled back (exit 1, the database exactly as before) or, past COMMIT, applied (exit 0)."""
    db = migrated_pair
    if event == "prune":
        settings.BACKUP_DIR = tmp_path / "backups"
        older = backups.create_backup(using=db.alias, name="older", reason="pre-migrate")
    before = fingerprint(db)
    run = Run(db, tmp_path, settings, env={"BACKUP_KEEP": "1"})
    run.signal_at_event(event, getattr(signal, sig))
    code, err, took = run.finish(timeout=PROMPT_S)
    assert_pre_or_post_state(db, before, code, err, f"interrupted by {sig}")
    if event == "prune":  # past COMMIT: applied, and the pruned backup gone whole (manifest first)
        assert code == ExitCode.OK
        assert "older" not in [m.name for m in backups.list_backups()]
        assert not older.manifest_path.exists() and not older.path.exists()


@pytest.mark.parametrize(
    ("engine", "event"),
    [("sqlite", "safe_migrate.failed"), ("postgresql", "safe_migrate.reversed")],  # each engine, each moment
    indirect=["engine"],
)
def test_sigterm_during_recovery_lets_the_recovery_finish(migrated_db, tmp_path, settings, event):
    """ma_segments: 0001 (atomic) commits, 0002 (non-atomic) adds a column and fails, so recovery
    reverses both. SIGTERM the moment recovery begins ("failed") or has reversed the first step:
    recovery is never abandoned half-way nor relabelled. Exit 1 with the failure's own line, the
    exact pre-state, the lock free, the backup verifying, the signal recorded in the end line."""
    db = migrated_db
    before = fingerprint(db)
    run = Run(db, tmp_path, settings, env={"TEST_MIGRATION_APPS": "ma_segments"})
    run.signal_at_event(event, signal.SIGTERM)
    code, err, _took = run.finish(timeout=PROMPT_S)
    assert code == ExitCode.FAILED, err
    assert_pre_or_post_state(db, before, code, err, "fails on purpose")
    assert "rolled back (reverse)" in err
    end = [e for e in run.events() if e["event"] == "safe_migrate.end"][-1]
    assert end["signals"] == ["SIGTERM"] and end["rollback"] == "reverse"


class _SignalDuringPrune(SafeMigration):
    """SIGTERM to itself as pruning starts (the migration committed, an older backup to remove)."""

    def _prune(self):
        os.kill(os.getpid(), signal.SIGTERM)
        super()._prune()


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_sigterm_during_pruning_removes_whole_backups_and_stays_applied(request, tmp_path, settings, vendor):
    from tests.conftest import _scratch

    db = _scratch(request, vendor, "baseline")
    seed_baseline(db)
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.BACKUP_KEEP = 1
    older = backups.create_backup(using=db.alias, name="older", reason="pre-migrate")
    summary = _SignalDuringPrune(db.alias, SafeMigrateOptions()).run()
    assert summary.exit_code == ExitCode.OK and summary.status == "applied", summary.error
    assert fully_migrated(db)
    assert [m.name for m in backups.list_backups()] == [summary.backup]
    assert not older.manifest_path.exists() and not older.path.exists()
    assert backups_all_verify() == []
    end = [event for event in audit.read_events() if event["event"] == "safe_migrate.end"][-1]
    assert end["signals"] == ["SIGTERM"] and end["exit_code"] == 0
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
    run.stop_at_event(event)  # held at that point while its sessions are found and ended
    try:
        ended = _sessions_of_the_run(db)
        _end_session(db, ended)
    finally:
        run.resume()
    code, err, took = run.finish(timeout=PROMPT_S)
    assert ended, "safe_migrate had no session to end"
    assert took < PROMPT_S
    assert_pre_or_post_state(db, before, code, err, "connection to the database was lost")
