"""safe_migrate: every failure leaves the database exactly as it was (real PostgreSQL and SQLite)."""

from __future__ import annotations

import json
import signal
import time

import pytest
from django.db import connections

from migrations_ops import audit, backups
from migrations_ops.api import safe_migrate
from migrations_ops.errors import ExitCode
from migrations_ops.options import SafeMigrateOptions
from tests.dbs import manage_env, run_manage, start_manage
from tests.helpers import (
    add_customer,
    corrupt,
    fingerprint,
    manage_with_test_settings,
    run_safe_migrate,
    seed_baseline,
    with_apps,
)


@pytest.fixture(autouse=True)
def _isolated_backups(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.MIGRATION_LOCK_TIMEOUT = "2s"


# ---------------------------------------------------------------- the happy paths


def test_upgrade_from_baseline_applies_backs_up_and_validates(baseline_db):
    seed_baseline(baseline_db)
    summary = run_safe_migrate(baseline_db)
    assert summary.status == "applied", summary.error
    assert summary.exit_code == 0
    assert "billing.0002_enhanced_subscription_payment_models" in summary.applied
    assert summary.rollback is None
    assert summary.validation.ok is True
    manifest = backups.get_backup(summary.backup)
    assert manifest.reason == "pre-migrate"
    assert manifest.tables["subscriptions"] == 3
    # The backfill really ran inside the pipeline.
    assert baseline_db.scalar("SELECT COUNT(*) FROM subscriptions WHERE total_cost = price") == 3
    events = [e["event"] for e in audit.read_events()]
    for phase in (
        "safe_migrate.start",
        "safe_migrate.plan",
        "safe_migrate.backup",
        "safe_migrate.validate",
        "safe_migrate.end",
    ):
        assert phase in events


def test_nothing_to_do_takes_no_backup(migrated_db):
    summary = run_safe_migrate(migrated_db)
    assert summary.status == "nothing_to_do"
    assert summary.exit_code == 0
    assert summary.backup is None
    assert backups.list_backups() == []


def test_run_is_recorded_after_the_outcome(baseline_db, settings):
    seed_baseline(baseline_db)
    run_safe_migrate(baseline_db)
    rows = baseline_db.query("SELECT status, backup FROM migrations_ops_migrationrun")
    assert [r[0] for r in rows] == ["applied"]


@pytest.mark.parametrize("mode", ["plan_only", "dry_run", "rehearse"])
def test_plan_dry_run_and_rehearsal_write_nothing_to_the_live_database(migrated_db, settings, mode):
    """They promise to leave the live database as it is: no MigrationRun row (the audit log has the
    run), every table's schema and content unchanged."""
    with_apps(settings, "ma_slow")
    before = fingerprint(migrated_db)
    runs = migrated_db.query("SELECT id FROM migrations_ops_migrationrun")
    summary = run_safe_migrate(migrated_db, **{mode: True})
    assert summary.status == {"plan_only": "planned", "dry_run": "dry_run", "rehearse": "rehearsed"}[mode]
    assert summary.exit_code == ExitCode.OK, summary.error
    assert migrated_db.query("SELECT id FROM migrations_ops_migrationrun") == runs
    assert fingerprint(migrated_db) == before
    # The live run's end line (a rehearsal's copy logs its own run before it).
    assert [e for e in audit.read_events() if e["event"] == "safe_migrate.end"][-1]["status"] == summary.status


# ---------------------------------------------------------------- failures roll back


def test_failure_in_the_middle_of_a_plan_rolls_back_everything(migrated_db, settings):
    with_apps(settings, "ma_raises")
    migrated_db.migrate("ma_raises:0001_initial")
    add_customer(migrated_db)
    before = fingerprint(migrated_db)
    summary = run_safe_migrate(migrated_db)
    assert summary.status == "rolled_back", summary.error
    assert summary.exit_code == ExitCode.FAILED
    assert summary.rollback == "transaction"
    assert "fails on purpose" in summary.error
    assert summary.applied == []
    after = fingerprint(migrated_db)
    assert _diff(after["content"], before["content"]) == {}
    assert after == before
    assert "size" not in [c[0] for c in fingerprint(migrated_db)["schema"]["ma_widgets"][0]]


def test_deferred_foreign_key_violation_is_caught_and_named(migrated_db, settings):
    with_apps(settings, "ma_orphan")
    add_customer(migrated_db)
    before = fingerprint(migrated_db)
    summary = run_safe_migrate(migrated_db)
    assert summary.exit_code == ExitCode.FAILED
    assert summary.rollback == "transaction"
    assert "ma_orphan.0002_orphan" in summary.error
    assert fingerprint(migrated_db) == before
    assert "ma_notes" not in before["schema"]


def test_an_empty_database_is_migrated_and_a_failure_leaves_it_empty(empty_db, settings):
    """Django's migrate creates django_migrations before the first migration, outside the transaction:
    on SQLite its schema editor then turned foreign-key checks back on and the first migration failed.
    safe_migrate creates it beforehand, and a failed first run removes it again: the database had no
    table at all, and has none after the rollback."""
    apps = list(settings.INSTALLED_APPS)
    with_apps(settings, "ma_raises")
    summary = run_safe_migrate(empty_db)
    assert summary.status == "rolled_back", summary.error
    assert summary.exit_code == ExitCode.FAILED and "fails on purpose" in summary.error
    with empty_db.connection.cursor() as cursor:
        assert empty_db.connection.introspection.table_names(cursor) == []
    events = [e["event"] for e in audit.read_events()]
    assert "safe_migrate.recorder_dropped" in events and "safe_migrate.recovered" in events
    settings.INSTALLED_APPS = apps
    summary = run_safe_migrate(empty_db)
    assert summary.status == "applied", summary.error
    assert empty_db.scalar("SELECT COUNT(*) FROM pricing_configs") >= 1


def test_non_atomic_failure_is_reversed_not_restored(migrated_db, settings):
    """A non-atomic migration that fails part-way: its completed operations are reversed (the table
    it created is dropped), no backup is restored, so nothing else in the database is touched."""
    with_apps(settings, "ma_nonatomic")
    add_customer(migrated_db)
    before = fingerprint(migrated_db)
    summary = run_safe_migrate(migrated_db)
    assert summary.plan.rollback_path == "reverse"
    assert [s.to_dict() for s in summary.plan.segments] == [
        {"steps": ["ma_nonatomic.0001_initial"], "atomic": False, "rollback": "reverse"}
    ]
    assert summary.status == "rolled_back", summary.error
    assert summary.rollback == "reverse"
    assert summary.reversed == ["ma_nonatomic.0001_initial (its 1 completed operation(s))"]
    assert summary.exit_code == ExitCode.FAILED
    assert fingerprint(migrated_db) == before


def test_conflicting_leaves_are_refused(migrated_db, settings):
    with_apps(settings, "ma_conflict")
    summary = run_safe_migrate(migrated_db)
    assert summary.exit_code == ExitCode.BAD_INPUT
    assert "0002_left" in summary.error and "0002_right" in summary.error
    assert "makemigrations --merge" in summary.error


# ---------------------------------------------------------------- backwards and row loss


def test_backwards_target_guards_rows_unless_allowed(baseline_db):
    """Migrating loyalty back before 0003 unapplies the billing backfill and default pricing that
    depend on it: loyalty accounts and pricing configs lose rows, which must be named to proceed."""
    seed_baseline(baseline_db)
    baseline_db.migrate()
    assert baseline_db.scalar("SELECT COUNT(*) FROM loyalty_accounts") == 3
    before = fingerprint(baseline_db)

    refused = run_safe_migrate(baseline_db, app_label="loyalty", migration_name="0002")
    assert refused.exit_code == ExitCode.FAILED
    assert "row_count_guard" in refused.error and "loyalty_accounts: 3 -> 0" in refused.error
    assert fingerprint(baseline_db) == before

    only_one = run_safe_migrate(
        baseline_db, app_label="loyalty", migration_name="0002", allow_row_loss=frozenset({"loyalty_accounts"})
    )
    assert only_one.exit_code == ExitCode.FAILED and "pricing_configs" in only_one.error
    assert fingerprint(baseline_db) == before

    allowed = run_safe_migrate(
        baseline_db,
        app_label="loyalty",
        migration_name="0002",
        allow_row_loss=frozenset({"loyalty_accounts", "pricing_configs"}),
    )
    assert allowed.status == "applied", allowed.error
    assert "loyalty.0003_create_accounts_for_existing_users" in allowed.applied
    assert "billing.0003_backfill_subscription_costs" in allowed.applied
    assert baseline_db.scalar("SELECT COUNT(*) FROM loyalty_accounts") == 0
    assert baseline_db.scalar("SELECT COUNT(*) FROM subscriptions WHERE total_cost IS NOT NULL") == 0


# ---------------------------------------------------------------- modes that must not change anything


def test_plan_and_dry_run_leave_the_database_unchanged(baseline_db):
    seed_baseline(baseline_db)
    before = fingerprint(baseline_db)
    planned = run_safe_migrate(baseline_db, plan_only=True)
    assert planned.status == "planned"
    assert planned.backup is None
    assert planned.plan.rollback_path == "transaction"
    assert "subscriptions" in planned.plan.tables
    assert fingerprint(baseline_db) == before

    dry = run_safe_migrate(baseline_db, dry_run=True)
    assert dry.status == "dry_run"
    assert backups.get_backup(dry.backup).reason == "pre-migrate"
    assert fingerprint(baseline_db) == before


def test_rehearse_runs_on_a_copy_and_proves_the_reverse(baseline_db):
    seed_baseline(baseline_db)
    before = fingerprint(baseline_db)
    summary = run_safe_migrate(baseline_db, rehearse=True)
    assert summary.status == "rehearsed", summary.error
    assert fingerprint(baseline_db) == before
    assert summary.irreversible == []
    assert "billing.0002_enhanced_subscription_payment_models" in summary.migration_durations
    assert summary.reverse_checked_tables > 5
    # The --json document keeps the findings under "rehearsal".
    assert summary.to_dict()["rehearsal"]["irreversible"] == []
    if baseline_db.vendor == "postgresql":
        assert summary.exclusive_lock_s.get("subscriptions", 0) > 0
        # Only this database's copies: other test runs on the server may rehearse at the same time.
        leftovers = baseline_db.scalar(
            "SELECT COUNT(*) FROM pg_database WHERE datname LIKE %s", [f"{baseline_db.name}_rehearse%"]
        )
        assert leftovers == 0


def test_rehearsal_cannot_reach_the_live_database(migrated_db, settings):
    # A data migration that ignores the connection alias writes to `default`: in the rehearsal's
    # worker that is the copy, the only database it has.
    with_apps(settings, "ma_default_manager")
    migrated_db.migrate("ma_default_manager:0001_initial")
    migrated_db.query("INSERT INTO ma_notes (text) VALUES ('kept'), ('also kept')")
    before = fingerprint(migrated_db)
    summary = run_safe_migrate(migrated_db, rehearse=True)
    assert summary.status == "rehearsed", summary.error
    assert fingerprint(migrated_db) == before  # the live notes were never rewritten
    assert migrated_db.query("SELECT text FROM ma_notes ORDER BY id") == [("kept",), ("also kept",)]
    # The rewrite landed on the copy (its no-op reverse cannot restore it), and only the migration
    # that wrote ma_notes is a suspect: not the innocent data migration after it, and no bookkeeping
    # table (the worker's own MigrationRun record) is reported.
    assert summary.irreversible == [
        "ma_notes differs after the reverse migration (suspects: ma_default_manager.0002_rewrite_without_alias)"
    ]
    assert summary.applied == [] and summary.backup is not None


# ---------------------------------------------------------------- processes: lock, signals, CLI


def test_second_run_exits_3_while_the_first_holds_the_lock(migrated_db, tmp_path):
    marker = tmp_path / "running"
    env = {
        "TEST_MIGRATION_APPS": "ma_slow",
        "MA_SLOW_SECONDS": "6",
        "MA_SLOW_MARKER": str(marker),
        "BACKUP_DIR": str(tmp_path / "b"),
        "MIGRATION_LOG": str(tmp_path / "log"),
    }
    first = start_manage(migrated_db.url, "safe_migrate", "--noinput", env=manage_env(**env))
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        second = manage_with_test_settings(migrated_db, "safe_migrate", "--noinput", env=env)
        assert second.returncode == ExitCode.LOCKED, second.stderr
        assert "pid" in second.stderr and str(first.pid) in second.stderr
        assert second.stderr.count("\n") == 1
    finally:
        out, err = first.communicate(timeout=90)
    assert first.returncode == 0, err


def test_sigterm_mid_run_rolls_back_and_exits_1(migrated_db, tmp_path):
    add_customer(migrated_db)
    before = fingerprint(migrated_db)
    marker = tmp_path / "running"
    env = manage_env(
        TEST_MIGRATION_APPS="ma_slow",
        MA_SLOW_SECONDS="60",
        MA_SLOW_MARKER=str(marker),
        BACKUP_DIR=str(tmp_path / "b"),
        MIGRATION_LOG=str(tmp_path / "log"),
    )
    proc = start_manage(migrated_db.url, "safe_migrate", "--noinput", env=env)
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == ExitCode.FAILED, err
    assert "SIGTERM" in err
    assert "Traceback" not in err
    connections[migrated_db.alias].close()
    assert fingerprint(migrated_db) == before


def test_cli_rehearsal_leaves_the_live_default_database_alone(migrated_db, tmp_path):
    # Under manage.py the live database IS `default`: the data migration that ignores the alias
    # would rewrite it if the copy were migrated in the same process.
    env = {
        "TEST_MIGRATION_APPS": "ma_default_manager",
        "BACKUP_DIR": str(tmp_path / "b"),
        "MIGRATION_LOG": str(tmp_path / "log"),
    }
    first = manage_with_test_settings(migrated_db, "migrate", "ma_default_manager", "0001", "--noinput", env=env)
    assert first.returncode == 0, first.stderr
    migrated_db.query("INSERT INTO ma_notes (text) VALUES ('kept')")
    result = manage_with_test_settings(migrated_db, "safe_migrate", "--rehearse", "--noinput", "--json", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["status"] == "rehearsed"
    assert document["rehearsal"]["status"] == "applied"
    assert migrated_db.query("SELECT text FROM ma_notes") == [("kept",)]
    assert migrated_db.scalar("SELECT COUNT(*) FROM django_migrations WHERE app = 'ma_default_manager'") == 1


def test_json_summary_shape(baseline_db, tmp_path):
    seed_baseline(baseline_db)
    env = {"BACKUP_DIR": str(tmp_path / "b"), "MIGRATION_LOG": str(tmp_path / "log")}
    result = manage_with_test_settings(baseline_db, "safe_migrate", "--noinput", "--json", env=env)
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert set(document) >= {"status", "applied", "backup", "rollback", "validation", "durations", "error"}
    assert document["status"] == "applied"
    assert set(document["durations"]) >= {"backup_s", "migrate_s", "validate_s", "total_s"}
    again = manage_with_test_settings(baseline_db, "safe_migrate", "--noinput", "--json", env=env)
    assert json.loads(again.stdout)["status"] == "nothing_to_do"
    assert again.returncode == 0


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_lock_timeout_is_retried_then_rolled_back(baseline_db, settings):
    """Application traffic holding a lock: the migration waits lock_timeout, retries, then gives up."""
    import psycopg2

    settings.MIGRATION_LOCK_TIMEOUT = "100ms"
    seed_baseline(baseline_db)
    before = fingerprint(baseline_db)
    blocker = psycopg2.connect(baseline_db.url.replace("postgres://", "postgresql://"))
    try:
        with blocker.cursor() as cursor:
            cursor.execute("BEGIN; SELECT * FROM subscriptions LIMIT 1")  # ACCESS SHARE until commit
        summary = run_safe_migrate(baseline_db)
    finally:
        blocker.rollback()
        blocker.close()
    assert summary.exit_code == ExitCode.FAILED
    assert summary.rollback == "transaction"
    assert "lock timeout" in summary.error
    retries = [e for e in audit.read_events() if e["event"] == "safe_migrate.lock_timeout_retry"]
    assert len(retries) == 3
    assert fingerprint(baseline_db) == before


def _diff(a: dict, b: dict) -> dict:
    return {k: (a.get(k), b.get(k)) for k in set(a) | set(b) if a.get(k) != b.get(k)}


# ---------------------------------------------------------------- pass-through and preflight


def test_fake_records_without_running_under_the_same_safety(migrated_db, settings):
    """--fake for a schema that already exists (made by hand): recorded, the RunPython never runs."""
    with_apps(settings, "ma_slow")
    pk = "bigserial PRIMARY KEY" if migrated_db.vendor == "postgresql" else "integer NOT NULL PRIMARY KEY AUTOINCREMENT"
    migrated_db.query(f"CREATE TABLE ma_ticks (id {pk}, n integer NOT NULL)")
    summary = run_safe_migrate(migrated_db, fake=True)
    assert summary.status == "applied", summary.error
    assert summary.applied == ["ma_slow.0001_initial"]
    assert summary.backup is not None
    assert migrated_db.scalar("SELECT COUNT(*) FROM ma_ticks") == 0
    assert migrated_db.scalar("SELECT COUNT(*) FROM django_migrations WHERE app = 'ma_slow'") == 1


def test_existing_problems_stop_the_run_unless_accepted(migrated_db, settings):
    with_apps(settings, "ma_slow")
    add_customer(migrated_db)
    migrated_db.query("UPDATE subscriptions SET total_cost = total_cost + 1")  # breaks the cost invariant
    before = fingerprint(migrated_db)
    refused = run_safe_migrate(migrated_db)
    assert refused.exit_code == ExitCode.BAD_INPUT
    assert "billing.subscription_total_cost" in refused.error
    assert refused.backup is None
    assert fingerprint(migrated_db) == before

    accepted = run_safe_migrate(migrated_db, accept_existing_issues=True)
    assert accepted.status == "applied", accepted.error
    assert accepted.applied == ["ma_slow.0001_initial"]


def test_accepted_issues_stay_accepted_when_the_plan_adds_models(migrated_db, settings, analytics_migrations_copy):
    # An applied migration edited afterwards: migration_checksums fails, and its details count the
    # checksums it compared, which the plan's new migration raises by one.
    path = analytics_migrations_copy
    path.write_text(path.read_text().replace("class Migration", "# edited\nclass Migration", 1))
    with_apps(settings, "ma_slow")
    refused = run_safe_migrate(migrated_db)
    assert refused.exit_code == ExitCode.BAD_INPUT and "migration_checksums" in refused.error

    accepted = run_safe_migrate(migrated_db, accept_existing_issues=True)
    assert accepted.status == "applied", accepted.error
    (checksum_check,) = [c for c in accepted.validation.checks if c.name == "migration_checksums"]
    assert not checksum_check.ok  # still failing after the run: the same problem, accepted


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_preflight_names_each_missing_privilege(migrated_db, settings):
    """A role that can connect but not read or alter the tables is stopped before any backup."""
    import psycopg2

    from migrations_ops.aliases import temporary_alias

    with_apps(settings, "ma_slow")
    role = f"mops_ro_{migrated_db.alias[-6:]}"
    admin = psycopg2.connect(migrated_db.url.replace("postgres://", "postgresql://"))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE ROLE {role} LOGIN")
        cursor.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}")
        cursor.execute(f"REVOKE SELECT ON users FROM {role}")
    try:
        url = migrated_db.url.replace("postgres://postgres@", f"postgres://{role}@")
        with temporary_alias(url) as alias:
            summary = safe_migrate(alias, SafeMigrateOptions())
            connections[alias].close()
        assert summary.exit_code == ExitCode.BAD_INPUT
        assert "SELECT on table users" in summary.error
        assert "ownership of table subscriptions" in summary.error
        assert "CREATE on schema public" in summary.error
        assert summary.backup is None and backups.list_backups() == []
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP OWNED BY {role}")
            cursor.execute(f"DROP ROLE {role}")
        admin.close()


def test_migration_runs_are_shown_read_only_in_the_admin(client, django_user_model, db):
    from migrations_ops.models import MigrationRun

    MigrationRun.objects.create(status="rolled_back", exit_code=1, error="boom", rollback="transaction")
    admin = django_user_model.objects.create_superuser(email="ops@example.com", password="pw-123456!")
    client.force_login(admin)
    listing = client.get("/admin/migrations_ops/migrationrun/")
    assert listing.status_code == 200 and b"rolled_back" in listing.content
    assert client.get("/admin/migrations_ops/migrationrun/add/").status_code == 403
    run_id = MigrationRun.objects.get().pk
    page = client.get(f"/admin/migrations_ops/migrationrun/{run_id}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content


@pytest.mark.parametrize(
    "url",
    ["sqlite:////nonexistent-folder/db.sqlite3", "postgres://postgres:pw-s3cret@127.0.0.1:1/nope", "mysql://u@h/db"],
)
def test_unusable_database_is_one_line_and_exit_2(tmp_path, url):
    env = manage_env(BACKUP_DIR=str(tmp_path / "b"), MIGRATION_LOG=str(tmp_path / "log"))
    result = run_manage(url, "safe_migrate", "--noinput", env=env, timeout=60)
    assert result.returncode == ExitCode.BAD_INPUT, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert "s3cret" not in result.stderr + result.stdout
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").iterdir())


def test_rehearsing_from_a_damaged_backup_is_refused_before_any_copy(baseline_db):
    manifest = backups.create_backup(using=baseline_db.alias, name="damaged")
    corrupt(manifest.path, "truncate")
    summary = run_safe_migrate(baseline_db, rehearse=True, from_backup="damaged")
    assert summary.exit_code == ExitCode.BAD_INPUT, summary.error
    assert "truncated or altered" in summary.error and "the live database is only read" in summary.error


@pytest.mark.parametrize("engine", ["sqlite"])
def test_plan_says_the_rollback_path_once_in_words_and_bad_input_is_not_a_failure(baseline_db):
    planned = manage_with_test_settings(baseline_db, "safe_migrate", "--plan")
    assert planned.returncode == 0, planned.stderr
    assert planned.stdout.lower().count("rollback path") == 1, planned.stdout
    assert "any failure rolls back, no restore needed" in planned.stdout
    assert "; ~ " not in planned.stdout and "altered columns loyalty_account_id" in planned.stdout

    refused = manage_with_test_settings(baseline_db, "safe_migrate", "billing", "9999")
    assert refused.returncode == ExitCode.BAD_INPUT
    assert "Status: failed" not in refused.stdout and "Status: refused, nothing was changed" in refused.stdout
    assert refused.stderr == "error: no migration of 'billing' matches '9999'\n"
