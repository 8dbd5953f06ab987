"""safe_migrate --online when something goes wrong, phase by phase, on real PostgreSQL.

A failure in the expand phase (an application transaction holds a lock for longer than the retry
budget) or in the validate phase (a row written before the run violates the new CHECK) leaves the
database entirely at its pre-state, without a restore; a lock held briefly is waited out by
retries; an INVALID index left by an earlier build is rebuilt; SIGTERM during the backfill undoes
the run promptly; and the CI gate (`--plan --lint --json`) and the refusals work from the command
line.
"""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable

import psycopg2
import pytest

from migrations_ops import audit, backups
from migrations_ops.api import safe_migrate
from migrations_ops.errors import ExitCode
from migrations_ops.online.checkpoint import TABLE as CHECKPOINT_TABLE
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.validation import run_validation
from tests import dbs
from tests.dbs import manage_env, run_manage
from tests.helpers import (
    applied_migrations,
    backfill_reached,
    column_names,
    fingerprint,
    pg_schema,
    run_online,
    subscription_rows,
    with_apps,
)
from tests.reliability.harness import Run, pg, wait_for

# The online tests' settings (conftest): backups and the log in tmp_path, batches of 500 rows.
pytestmark = pytest.mark.usefixtures("online_settings")

PHASES = "ma_online_phases"


def pre_state(db) -> dict:
    """Schema and every table's content (django_migrations included), without the online run's own
    checkpoint table, which a failed run keeps for the record."""
    state = fingerprint(db)
    for part in state.values():
        part.pop(CHECKPOINT_TABLE, None)
    return {**state, "online_schema": pg_schema(db)}


def events(settings, name: str) -> list[dict]:
    return [e for e in audit.read_events(settings.MIGRATION_LOG) if e["event"] == f"safe_migrate.{name}"]


def assert_undone_without_restore(db, summary, before: dict) -> None:
    assert summary.exit_code == ExitCode.FAILED, summary.error
    assert summary.status == "rolled_back" and summary.rollback == "online"
    assert "no write of the application was lost" in summary.error
    assert pre_state(db) == before
    assert db.scalar(f"SELECT status FROM {CHECKPOINT_TABLE} WHERE id = %s", [summary.run_id]) == "failed"
    # The pre-migrate backup is the only one: nothing was restored (a restore takes a pre-restore backup).
    assert [m.reason for m in backups.list_backups()] == ["pre-migrate"]
    assert run_validation(using=db.alias).ok


class AppTransaction:
    """An application session inside a transaction that holds a lock (e.g. a long report's read),
    ending it from another thread once ``until()`` is true, as the application eventually would."""

    def __init__(self, db, sql: str) -> None:
        self.connection = pg(db)
        with self.connection.cursor() as cursor:
            cursor.execute(sql)  # autocommit off: the lock is held until the transaction ends
        self.ended = threading.Event()
        self._thread: threading.Thread | None = None

    def end_when(self, until: Callable[[], object], timeout: float = 120) -> AppTransaction:
        def watch() -> None:
            try:
                wait_for(until, timeout, "the moment to end the application's transaction")
            finally:
                self.connection.rollback()
                self.ended.set()

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __enter__(self) -> AppTransaction:
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._thread.join(timeout=130)
        self.connection.close()


def reading_subscriptions(db) -> AppTransaction:
    """ACCESS SHARE on subscriptions: the first ALTER of subscriptions waits for it."""
    return AppTransaction(db, "SELECT count(*) FROM subscriptions")


# ---------------------------------------------------------------- expand: lock retries


def test_an_expand_step_that_cannot_get_its_lock_within_the_budget_undoes_the_run(pg_seeded_db, settings):
    settings.MIGRATION_ONLINE_LOCK_TIMEOUT = "100ms"
    settings.MIGRATION_ONLINE_RETRY_BUDGET = "1s"
    before = pre_state(pg_seeded_db)
    # The report runs past the budget; it ends once the run has given up (the undo may need the table).
    with reading_subscriptions(pg_seeded_db).end_when(lambda: events(settings, "failed")) as app:
        summary = run_online(pg_seeded_db)
    assert app.ended.is_set()
    assert "gave up after 1s of lock conflicts" in summary.error and '"subscriptions"' in summary.error
    retries = [e for e in events(settings, "online_retry") if '"subscriptions"' in e["statement"]]
    assert len(retries) >= 2 and all("lock timeout" in e["error"] for e in retries)
    # Everything done before that step (the users expand and backfill, the new tables) is undone.
    assert events(settings, "migration") and events(settings, "online_undone")
    assert_undone_without_restore(pg_seeded_db, summary, before)


def test_when_the_undo_cannot_get_its_lock_either_abort_finishes_it_later(pg_seeded_db, settings):
    settings.MIGRATION_ONLINE_LOCK_TIMEOUT = "100ms"
    settings.MIGRATION_ONLINE_RETRY_BUDGET = "1s"
    before = pre_state(pg_seeded_db)
    # The report outlasts the whole run: undoing what was created next to subscriptions needs the table too.
    app = reading_subscriptions(pg_seeded_db)
    try:
        summary = run_online(pg_seeded_db)
    finally:
        app.connection.rollback()
        app.connection.close()
    assert summary.exit_code == ExitCode.RECOVERY_FAILED, summary.error
    assert f"undoing online run {summary.run_id} failed" in summary.error
    assert "safe_migrate --online --abort" in summary.error and summary.backup in summary.error
    assert pg_seeded_db.scalar(f"SELECT status FROM {CHECKPOINT_TABLE} WHERE id = %s", [summary.run_id]) == "running"
    assert events(settings, "online_undo_failed")

    aborted = run_online(pg_seeded_db, abort=True)
    assert aborted.exit_code == 0 and aborted.status == "aborted", aborted.error
    assert pre_state(pg_seeded_db) == before
    assert pg_seeded_db.scalar(f"SELECT status FROM {CHECKPOINT_TABLE} WHERE id = %s", [summary.run_id]) == "aborted"
    assert run_validation(using=pg_seeded_db.alias).ok


def test_an_expand_step_waits_out_a_lock_held_briefly_and_the_run_succeeds(pg_seeded_db, settings, tmp_path):
    settings.MIGRATION_ONLINE_LOCK_TIMEOUT = "100ms"
    settings.MIGRATION_ONLINE_RETRY_BUDGET = "60s"
    reference = dbs.new_database("postgresql", tmp_path, template=pg_seeded_db.name)
    try:
        assert safe_migrate(reference.alias, SafeMigrateOptions()).status == "applied"

        def retried_twice() -> bool:
            return len([e for e in events(settings, "online_retry") if '"subscriptions"' in e["statement"]]) >= 2

        with reading_subscriptions(pg_seeded_db).end_when(retried_twice):
            summary = run_online(pg_seeded_db)
        assert summary.status == "online_applied", summary.error
        assert summary.exit_code == 0 and summary.retries >= 2
        assert summary.to_dict()["online"]["retries"] == summary.retries
        assert all("lock timeout" in e["error"] and e["wait_s"] > 0 for e in events(settings, "online_retry"))
        assert pg_schema(pg_seeded_db) == pg_schema(reference)
        assert applied_migrations(pg_seeded_db) == applied_migrations(reference)
        assert subscription_rows(pg_seeded_db) == subscription_rows(reference)
        assert run_validation(using=pg_seeded_db.alias).ok
    finally:
        dbs.dispose(reference)


# ---------------------------------------------------------------- validate


def test_a_validate_constraint_that_fails_undoes_the_whole_run(pg_seeded_db, settings):
    with_apps(settings, PHASES)
    pg_seeded_db.migrate(f"{PHASES}:0001_initial")
    # Written by the application before the run: it violates the CHECK that 0003 adds.
    pg_seeded_db.query("INSERT INTO ma_widgets (name, size) VALUES ('ok', 1), ('broken', -1)")
    before = pre_state(pg_seeded_db)
    summary = run_online(pg_seeded_db)
    assert "ma_widgets_size_non_negative" in summary.error and "violated" in summary.error
    # It failed in VALIDATE: the constraint was added NOT VALID and everything before it was applied.
    applied_before_failure = {e["revision"] for e in events(settings, "migration")}
    assert {"billing.0003_backfill_subscription_costs", f"{PHASES}.0002_name_index"} <= applied_before_failure
    assert_undone_without_restore(pg_seeded_db, summary, before)


# ---------------------------------------------------------------- an INVALID index left by an earlier build


def _waiting_index_build(db) -> int | None:
    """The backend of a CREATE INDEX CONCURRENTLY waiting for a lock (for older writers), if any."""
    rows = db.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' "
        "AND query LIKE 'CREATE INDEX CONCURRENTLY%%'"
    )
    return rows[0][0] if rows else None


def test_an_invalid_index_left_by_a_killed_build_is_dropped_and_rebuilt_on_resume(pg_seeded_db, settings, tmp_path):
    with_apps(settings, PHASES)
    pg_seeded_db.migrate()
    pg_seeded_db.migrate(f"{PHASES}:0001_initial")
    pg_seeded_db.query("INSERT INTO ma_widgets (name, size) VALUES ('a', 1), ('b', 2)")
    pg_seeded_db.connection.close()  # a template database has no other session
    reference = dbs.new_database("postgresql", tmp_path, template=pg_seeded_db.name)
    env = {"TEST_MIGRATION_APPS": PHASES, "MIGRATION_ONLINE_LOCK_TIMEOUT": "30s"}
    try:
        # An application transaction writing ma_widgets: the concurrent build waits for it to end, with
        # its index already in the catalog (INVALID) meanwhile.
        app = AppTransaction(pg_seeded_db, "INSERT INTO ma_widgets (name, size) VALUES ('written meanwhile', 3)")
        run = Run(pg_seeded_db, tmp_path, settings, "--online", env=env)
        build = wait_for(lambda: _waiting_index_build(pg_seeded_db), 90, "the concurrent index build to wait")
        run.process.send_signal(signal.SIGKILL)
        assert run.finish()[0] == -signal.SIGKILL
        # The server notices a dead client only at its next I/O: end the orphaned build as an operator
        # (or its lock timeout) would. PostgreSQL keeps the index it started, INVALID.
        assert pg_seeded_db.scalar("SELECT pg_terminate_backend(%s)", [build])
        wait_for(lambda: not pg_seeded_db.scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [build]))
        app.connection.commit()
        app.connection.close()
        valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ma_widgets_name_idx'::regclass"
        assert pg_seeded_db.scalar(valid) is False
        assert pg_seeded_db.scalar(f"SELECT status FROM {CHECKPOINT_TABLE} ORDER BY id DESC LIMIT 1") == "running"

        resumed = run_manage(
            pg_seeded_db.url, "safe_migrate", "--online", "--resume", "--noinput", "--json", env=_env(tmp_path, PHASES)
        )
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "resumed"
        pg_seeded_db.connection.close()
        assert pg_seeded_db.scalar(valid) is True
        assert safe_migrate(reference.alias, SafeMigrateOptions()).status == "applied"
        assert pg_schema(pg_seeded_db) == pg_schema(reference)  # the index as the migration defines it, valid
        assert pg_seeded_db.scalar("SELECT count(*) FROM ma_widgets WHERE name = 'written meanwhile'") == 1
        assert run_validation(using=pg_seeded_db.alias).ok
    finally:
        dbs.dispose(reference)


def test_an_invalid_index_left_outside_an_online_run_is_named_by_preflight_then_rebuilt(pg_seeded_db, settings):
    """A leftover no checkpoint knows of (a build killed under plain migrate, or by hand) fails the
    preflight validation like any invalid index; accepted, the online run drops and rebuilds it."""
    with_apps(settings, PHASES)
    pg_seeded_db.migrate()
    pg_seeded_db.migrate(f"{PHASES}:0001_initial")
    pg_seeded_db.query("INSERT INTO ma_widgets (name, size) VALUES ('a', 1), ('a', 2)")
    session = pg(pg_seeded_db)
    session.autocommit = True
    with pytest.raises(psycopg2.errors.UniqueViolation), session.cursor() as cursor:
        cursor.execute('CREATE UNIQUE INDEX CONCURRENTLY "ma_widgets_name_idx" ON ma_widgets (name)')
    session.close()
    valid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'ma_widgets_name_idx'::regclass"
    before = pre_state(pg_seeded_db)

    refused = run_online(pg_seeded_db)
    assert refused.exit_code == ExitCode.BAD_INPUT and "fails validation before migrating: indexes" in refused.error
    assert pre_state(pg_seeded_db) == before and pg_seeded_db.scalar(valid) is False

    summary = run_online(pg_seeded_db, accept_existing_issues=True)
    assert summary.status == "online_applied", summary.error
    assert pg_seeded_db.scalar(valid) is True
    assert (
        "CREATE INDEX ma_widgets_name_idx ON public.ma_widgets"
        in pg_schema(pg_seeded_db)[("ma_widgets", "index ma_widgets_name_idx")]
    )
    assert run_validation(using=pg_seeded_db.alias).ok


# ---------------------------------------------------------------- SIGTERM during the backfill


def test_sigterm_during_the_backfill_undoes_the_run_and_a_new_run_completes(pg_seeded_db, settings, tmp_path):
    env = {"MIGRATION_ONLINE_BATCH_SIZE": "100", "MIGRATION_ONLINE_BATCH_PAUSE": "30ms"}
    reference = dbs.new_database("postgresql", tmp_path, template=pg_seeded_db.name)
    try:
        before = pre_state(pg_seeded_db)
        run = Run(pg_seeded_db, tmp_path, settings, "--online", env=env)
        wait_for(lambda: backfill_reached(pg_seeded_db, "billing.0003_backfill_subscription_costs"), 90, "the backfill")
        run.process.send_signal(signal.SIGTERM)
        # A second signal while it undoes itself is noted, never abandons the undo.
        run.wait_for_event("safe_migrate.failed")
        run.process.send_signal(signal.SIGTERM)
        code, err, _ = run.finish(timeout=60)
        assert code == ExitCode.FAILED, err
        (line,) = [line for line in err.splitlines() if line.startswith("error:")]
        assert "interrupted by SIGTERM during migrate; undone online" in line
        (failed,) = [e for e in audit.read_events(run.log) if e["event"] == "safe_migrate.failed"]
        assert failed["error"] == "interrupted by SIGTERM during migrate" and failed["path"] == "online"
        # Prompt: it stopped in the backfill, and billing 0003 was never recorded.
        assert "billing.0003_backfill_subscription_costs" not in {
            e.get("revision") for e in audit.read_events(run.log) if e["event"] == "safe_migrate.migration"
        }
        assert pre_state(pg_seeded_db) == before
        assert run_validation(using=pg_seeded_db.alias).ok
        # Nothing is left to resume or abort; a new run completes to the same end as the transactional path.
        for flag in ("--resume", "--abort"):
            left = run_manage(pg_seeded_db.url, "safe_migrate", "--online", flag, "--noinput", env=_env(tmp_path))
            assert left.returncode == ExitCode.BAD_INPUT and "no unfinished online run" in left.stderr
        again = run_manage(pg_seeded_db.url, "safe_migrate", "--online", "--noinput", "--json", env=_env(tmp_path))
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["status"] == "online_applied"
        assert safe_migrate(reference.alias, SafeMigrateOptions()).status == "applied"
        assert pg_schema(pg_seeded_db) == pg_schema(reference)
        assert applied_migrations(pg_seeded_db) == applied_migrations(reference)
        assert subscription_rows(pg_seeded_db) == subscription_rows(reference)
        assert run_validation(using=pg_seeded_db.alias).ok
    finally:
        dbs.dispose(reference)


def _env(tmp_path, apps: str = "") -> dict[str, str]:
    return manage_env(
        BACKUP_DIR=str(tmp_path / "backups"), MIGRATION_LOG=str(tmp_path / "cli.log"), TEST_MIGRATION_APPS=apps
    )


# ---------------------------------------------------------------- the command line: lint gate and refusals


def test_plan_lint_json_is_a_ci_gate_from_the_command_line(pg_seeded_db, settings, tmp_path):
    clean = run_manage(pg_seeded_db.url, "safe_migrate", "--plan", "--lint", "--json", env=_env(tmp_path))
    assert clean.returncode == 0, clean.stderr
    document = json.loads(clean.stdout)
    assert document["status"] == "planned" and document["online"]["plan"]["refusals"] == []
    assert len(document["online"]["plan"]["migrations"]) == len(document["plan"]["steps"]) > 20

    with_apps(settings, "ma_online_unsafe")
    pg_seeded_db.migrate("ma_online_unsafe:0001_initial")
    before = pre_state(pg_seeded_db)
    blocked = run_manage(
        pg_seeded_db.url, "safe_migrate", "--plan", "--lint", "--json", env=_env(tmp_path, "ma_online_unsafe")
    )
    assert blocked.returncode == 1, blocked.stderr
    document = json.loads(blocked.stdout)
    assert "3 operation(s) would block" in document["error"]
    refused = [
        op
        for migration in document["online"]["plan"]["migrations"]
        for op in migration["operations"]
        if op.get("refused")
    ]
    assert [(op["operation"], op["description"]) for op in refused] == [
        (0, "Add field size to gadget"),
        (1, "Raw Python operation"),
        (2, "Alter field name on gadget"),
    ]
    assert all(r.startswith("ma_online_unsafe.0002_unsafe operation") for r in document["online"]["plan"]["refusals"])
    assert pre_state(pg_seeded_db) == before


def test_a_rename_opens_a_window_from_the_command_line_and_complete_closes_it(pg_seeded_db, settings, tmp_path):
    """A rename used to be refused; now it is split: expand opens a window (exit 0, the next step named),
    --complete closes it (exit 0), each as one line the operator acts on."""
    with_apps(settings, "ma_online_rename")
    pg_seeded_db.migrate("ma_online_rename:0001_initial")
    env = _env(tmp_path, "ma_online_rename")
    expanded = run_manage(pg_seeded_db.url, "safe_migrate", "--online", "--noinput", env=env)
    assert expanded.returncode == 0, expanded.stderr
    (line,) = [line for line in expanded.stdout.splitlines() if line.startswith("Expanded: window")]
    assert "deploy the new release, then run safe_migrate --online --complete" in line
    assert {"label", "title"} <= set(column_names(pg_seeded_db, "ma_gizmos"))
    completed = run_manage(pg_seeded_db.url, "safe_migrate", "--online", "--complete", "--noinput", env=env)
    assert completed.returncode == 0, completed.stderr
    assert "Completed: window" in completed.stdout
    assert "label" not in column_names(pg_seeded_db, "ma_gizmos")
