"""SIGTERM/SIGINT and the server ending the sessions (pg_terminate_backend) in every phase: a prompt,
clean exit 1 with the database as before.

PostgreSQL with MIGRATION_LOCK_TIMEOUT=60s, so a wait on another session's lock is long: the run
must end because of the fault, not because the wait timed out.
"""

from __future__ import annotations

import os
import signal

import pytest
from django.db import connections

from migrations_ops import audit, backups
from migrations_ops.errors import ExitCode
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.pipeline import Pipeline
from migrations_ops.pipeline.events import Event
from migrations_ops.strategies.online import OnlineStrategy
from migrations_ops.strategies.transactional import TransactionalStrategy
from tests import dbs
from tests.helpers import fingerprint, seed_baseline
from tests.reliability.harness import (
    Run,
    assert_pre_or_post_state,
    backups_all_verify,
    fully_migrated,
    lock_is_free,
    pg,
    wait_for,
    waiting_on_lock,
)

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


ROLLED_BACK, APPLIED = "rolled back", "applied"
# The moment the last migration's line appears: every migration is applied in the still open
# transaction, and post_migrate (content types, permissions) and the whole validation lie ahead.
LAST_MIGRATION = "safe_migrate.migration (the last)"


@pytest.mark.parametrize(
    ("event", "sig", "outcome"),
    [
        # Before COMMIT the only right outcome is the rollback: exit 1, the exact pre-state.
        ("safe_migrate.plan", "SIGTERM", ROLLED_BACK),  # preflight next
        ("backup.start", "SIGTERM", ROLLED_BACK),  # the dump running
        ("backup.end", "SIGINT", ROLLED_BACK),  # the backup being verified
        ("safe_migrate.backup", "SIGTERM", ROLLED_BACK),  # the transaction about to open
        ("safe_migrate.migration", "SIGINT", ROLLED_BACK),  # the first migration applied, 29 to go
        # Not "safe_migrate.validate": _post_validate writes that line as its last act, and
        # _apply_attempt goes at once to begin_deferral() and the final COMMIT; a signal sent when the
        # line is seen lands (a few ms later) in the deferred COMMIT or after it, where "applied" is
        # the right outcome too, so that case could assert neither. The last migration's line is the
        # latest point unambiguously before COMMIT: post_migrate and validation (over half a second
        # on either engine) still stand between it and the COMMIT.
        (LAST_MIGRATION, "SIGTERM", ROLLED_BACK),
        # Past COMMIT the only right outcome is the applied run: exit 0, fully migrated.
        ("prune", "SIGTERM", APPLIED),  # an older pre-migrate backup is being removed (BACKUP_KEEP=1)
        ("safe_migrate.end", "SIGINT", APPLIED),  # the MigrationRun row being written
    ],
)
def test_signal_in_each_phase_ends_cleanly(migrated_pair, tmp_path, settings, event, sig, outcome):
    """The signal is sent the moment the phase's audit line appears: the run ends at once with the one
    outcome right for that moment: rolled back before COMMIT (exit 1, "interrupted by SIG...", the
    database exactly as before, no run recorded as applied), applied past it (exit 0, fully migrated)."""
    db = migrated_pair
    settings.BACKUP_DIR = tmp_path / "backups"
    older = backups.create_backup(using=db.alias, name="older", reason="pre-migrate")
    before = fingerprint(db)
    run = Run(db, tmp_path, settings, env={"BACKUP_KEEP": "1"})
    if event == LAST_MIGRATION:
        _signal_at_last_migration(run, getattr(signal, sig))
    else:
        run.signal_at_event(event, getattr(signal, sig))
    code, err, took = run.finish(timeout=PROMPT_S)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    if outcome == ROLLED_BACK:
        assert code == ExitCode.FAILED, err
        assert len(lines) == 1 and f"interrupted by {sig}" in lines[0], err
        assert fingerprint(db) == before
        assert _runs_recorded(db, "applied") == 0 and not fully_migrated(db)
        end = [e for e in run.events() if e["event"] == "safe_migrate.end"][-1]
        assert (end["exit_code"], end["signals"]) == (ExitCode.FAILED, [sig])
        assert "older" in [m.name for m in backups.list_backups()]  # nothing pruned before COMMIT
    else:
        assert code == ExitCode.OK, err
        assert lines == []
        assert fully_migrated(db)
        assert _runs_recorded(db, "applied") == 1
        # The pruned backup gone whole (manifest first).
        assert "older" not in [m.name for m in backups.list_backups()]
        assert not older.manifest_path.exists() and not older.path.exists()
    assert backups_all_verify() == []
    assert lock_is_free(db)


def _stop_at_last_migration(run: Run) -> None:
    """SIGSTOP the run the moment the line of the plan's last migration appears (held until resumed)."""

    def seen():
        events = run.events()
        steps = next((e["steps"] for e in events if e["event"] == "safe_migrate.plan"), None)
        applied = [e for e in events if e["event"] == "safe_migrate.migration"]
        return bool(steps) and len(applied) == len(steps) or (run.process.poll() is not None and "exited")

    assert wait_for(seen, 60, "the last migration", 0.002) is True, run.process.communicate()
    run.process.send_signal(signal.SIGSTOP)


def _signal_at_last_migration(run: Run, sig: signal.Signals) -> None:
    """``sig`` the moment the line of the plan's last migration appears (stopped first, as
    Run.signal_at_event does, so it lands right there)."""
    _stop_at_last_migration(run)
    try:
        run.process.send_signal(sig)
    finally:
        run.resume()


def _runs_recorded(db, status: str) -> int:
    """MigrationRun rows with ``status`` (0 when the table is not there: the baseline has none)."""
    connection = connections[db.alias]
    with connection.cursor() as cursor:
        if "migrations_ops_migrationrun" not in connection.introspection.table_names(cursor):
            return 0
    return db.scalar("SELECT COUNT(*) FROM migrations_ops_migrationrun WHERE status = %s", [status])


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


def _sigterm_at(using: str, event_name: str, strategy=TransactionalStrategy, **options) -> Pipeline:
    """A pipeline that sends SIGTERM to its own process the moment it emits ``event_name`` (a
    subscriber of its event stream, as the terminal and the audit log are)."""
    pipeline = Pipeline(using, SafeMigrateOptions(**options), strategy=strategy)

    def on(event: Event) -> None:
        if event.name == event_name:
            os.kill(os.getpid(), signal.SIGTERM)

    pipeline.events.subscribe(on)
    return pipeline


@pytest.mark.parametrize("vendor", ["postgresql", "sqlite"])
def test_sigterm_during_pruning_removes_whole_backups_and_stays_applied(request, tmp_path, settings, vendor):
    db = dbs.scratch(request, vendor, "baseline")
    seed_baseline(db)
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.BACKUP_KEEP = 1
    older = backups.create_backup(using=db.alias, name="older", reason="pre-migrate")
    summary = _sigterm_at(db.alias, "prune_start").run()  # the migration committed, an older backup to remove
    assert summary.exit_code == ExitCode.OK and summary.status == "applied", summary.error
    assert fully_migrated(db)
    assert [m.name for m in backups.list_backups()] == [summary.backup]
    assert not older.manifest_path.exists() and not older.path.exists()
    assert backups_all_verify() == []
    end = [event for event in audit.read_events() if event["event"] == "safe_migrate.end"][-1]
    assert end["signals"] == ["SIGTERM"] and end["exit_code"] == 0
    assert lock_is_free(db)


# SIGTERM the moment the final COMMIT is done, before the migration lock is released (CI once caught a
# real signal in that window: exit 1 "interrupted", the database fully migrated); online: once the run
# is validated and its checkpoint closed.
AFTER_COMMIT = ("committed", TransactionalStrategy)
AFTER_ONLINE_RUN = ("online_end", OnlineStrategy)


@pytest.mark.parametrize(
    ("vendor", "moment"),
    [("postgresql", AFTER_COMMIT), ("sqlite", AFTER_COMMIT), ("postgresql", AFTER_ONLINE_RUN)],
)
def test_a_signal_after_the_outcome_is_decided_never_relabels_it(request, tmp_path, settings, vendor, moment):
    """Exit 1 says "the database is as before": a signal after COMMIT must leave the run applied."""
    db = dbs.scratch(request, vendor, "baseline")
    seed_baseline(db)
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    event_name, strategy = moment
    summary = _sigterm_at(db.alias, event_name, strategy, online=strategy is OnlineStrategy).run()
    assert summary.exit_code == ExitCode.OK, summary.error
    assert summary.status in ("applied", "online_applied")
    assert fully_migrated(db)
    end = [event for event in audit.read_events() if event["event"] == "safe_migrate.end"][-1]
    assert end["signals"] == ["SIGTERM"] and end["exit_code"] == 0
    assert lock_is_free(db)


@pytest.fixture
def pg_baseline(request):
    db = dbs.scratch(request, "postgresql", "baseline")
    seed_baseline(db)
    return db


@pytest.fixture(params=["postgresql", "sqlite"])
def migrated_pair(request):
    """A seeded baseline of each engine: the upgrade (30 migrations) is the plan."""
    db = dbs.scratch(request, request.param, "baseline")
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
        LAST_MIGRATION,  # not "safe_migrate.validate": see test_signal_in_each_phase_ends_cleanly
    ],
)
def test_the_server_ending_the_sessions_in_each_phase(pg_baseline, tmp_path, settings, event):
    """pg_terminate_backend of every session of the run the moment the phase's audit line appears
    (the run is held there, so every case ends its sessions before the final COMMIT): exit 1 "connection
    to the database was lost" and the exact pre-state, never an applied run; prompt, the lock free,
    every backup verifying."""
    from django.db import connections

    db = pg_baseline
    before = fingerprint(db)
    connections[db.alias].close()
    run = Run(db, tmp_path, settings, env=LONG_WAIT)
    if event == LAST_MIGRATION:
        _stop_at_last_migration(run)
    else:
        run.stop_at_event(event)  # held at that point while its sessions are found and ended
    try:
        ended = _sessions_of_the_run(db)
        _end_session(db, ended)
    finally:
        run.resume()
    code, err, took = run.finish(timeout=PROMPT_S)
    assert ended, "safe_migrate had no session to end"
    assert took < PROMPT_S
    assert code == ExitCode.FAILED, err
    assert_pre_or_post_state(db, before, code, err, "connection to the database was lost")
