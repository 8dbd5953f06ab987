"""safe_migrate --online on real PostgreSQL: the application keeps running, nothing is lost, and
every way a run can end (done, refused, failed, killed then resumed or aborted) leaves either the
old or the new schema, never a mix."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from django.db import connections

from migrations_ops.api import safe_migrate
from migrations_ops.errors import ExitCode
from migrations_ops.fingerprint import table_checksums
from migrations_ops.online.statements import CATALOG, CONCURRENT, Refused, inverse, plan_statements
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.strategies.online import BatchCost
from migrations_ops.validation import run_validation
from tests import dbs
from tests.dbs import ROOT
from tests.helpers import (
    SEEDED_SUBSCRIPTIONS,
    SEEDED_USERS,
    applied_migrations,
    backfill_reached,
    pg_schema,
    run_online,
    subscription_rows,
    with_apps,
)
from tests.workload import AppWorkload

pytestmark = pytest.mark.usefixtures("online_settings")


def content(db, tables=("users", "subscriptions")) -> dict[str, str]:
    return table_checksums(list(tables), using=db.alias)


# ---------------------------------------------------------------- how each statement runs


def test_statements_become_online_steps():
    existing = {"subscriptions", "users"}
    add_fk = (
        'ALTER TABLE "subscriptions" ADD COLUMN "pricing_config_id" bigint NULL CONSTRAINT "fk1" REFERENCES '
        '"pricing_configs"("id") DEFERRABLE INITIALLY DEFERRED; SET CONSTRAINTS "fk1" IMMEDIATE'
    )
    column, constraint = [s for s in plan_statements(add_fk, existing) if s.mode != "skip"]
    assert column.sql == 'ALTER TABLE "subscriptions" ADD COLUMN "pricing_config_id" bigint NULL'
    assert constraint.sql.endswith("NOT VALID") and "FOREIGN KEY" in constraint.sql
    assert constraint.validates == [("subscriptions", "fk1")]

    unique = plan_statements('ALTER TABLE "users" ADD COLUMN "cus" varchar(255) NULL UNIQUE', existing)
    assert [s.mode for s in unique] == [CATALOG, CONCURRENT, CATALOG]
    assert "UNIQUE" not in unique[0].sql
    assert unique[1].sql.startswith('CREATE UNIQUE INDEX CONCURRENTLY "users_cus_key"')
    assert unique[2].sql.endswith('UNIQUE USING INDEX "users_cus_key"')

    (index,) = plan_statements('CREATE INDEX "i1" ON "subscriptions" ("plan")', existing)
    assert index.mode == CONCURRENT and index.sql.startswith('CREATE INDEX CONCURRENTLY "i1"')
    # A table created by the same run is empty and unused: its statements run as they are.
    (fresh,) = plan_statements('CREATE INDEX "i2" ON "loyalty_accounts" ("tier")', existing)
    assert fresh.mode == CATALOG and "CONCURRENTLY" not in fresh.sql

    assert plan_statements('ALTER TABLE "users" ADD COLUMN "n" integer DEFAULT 0 NOT NULL', existing)[0].mode == CATALOG

    assert inverse(column).sql == 'ALTER TABLE "subscriptions" DROP COLUMN IF EXISTS "pricing_config_id"'
    assert inverse(index).sql == 'DROP INDEX CONCURRENTLY IF EXISTS "i1"'
    assert inverse(constraint).sql == 'ALTER TABLE "subscriptions" DROP CONSTRAINT IF EXISTS "fk1"'


@pytest.mark.parametrize(
    ("statement", "reason"),
    [
        pytest.param(
            'ALTER TABLE "users" ADD COLUMN "n" integer NOT NULL',
            "without a database default",
            id="not-null-column-without-default",
        ),
        pytest.param('ALTER TABLE "users" ALTER COLUMN "n" SET NOT NULL', "SET NOT NULL", id="set-not-null"),
        pytest.param(
            'ALTER TABLE "users" ALTER COLUMN "n" TYPE bigint USING "n"::bigint', "column type", id="column-type-change"
        ),
        pytest.param('ALTER TABLE "users" DROP COLUMN "n" CASCADE', "still use", id="drop-column"),
        pytest.param("UPDATE users SET role = 'x'", "RunSQLBatched", id="unbatched-update"),
        pytest.param(
            'ALTER TABLE "users" ADD COLUMN "t" timestamptz DEFAULT now() NOT NULL',
            "not asked of the server",
            id="default-calling-a-function-without-the-server",
        ),
    ],
)
def test_statements_that_would_block_are_refused(statement, reason):
    # Without the server to ask (tests/test_online_facts.py asks it), a default that calls a function
    # and every type change are taken to rewrite the table.
    with pytest.raises(Refused, match=reason):
        plan_statements(statement, {"subscriptions", "users"})


# ---------------------------------------------------------------- a whole run


def test_online_upgrade_ends_exactly_where_the_transactional_path_ends(pg_seeded_db, tmp_path):
    twin = dbs.new_database("postgresql", tmp_path, template=pg_seeded_db.name)
    try:
        summary = run_online(pg_seeded_db)
        assert summary.status == "online_applied", summary.error
        assert summary.exit_code == 0 and summary.backup
        transactional = safe_migrate(twin.alias, SafeMigrateOptions())
        assert transactional.status == "applied", transactional.error
        assert pg_schema(pg_seeded_db) == pg_schema(twin)
        # Loyalty account ids are surrogates (batched inserts number accounts in user-id order):
        # compare subscriptions with each account named by its user.
        assert subscription_rows(pg_seeded_db) == subscription_rows(twin)
        assert content(pg_seeded_db, ("users",)) == content(twin, ("users",))
        assert applied_migrations(pg_seeded_db) == applied_migrations(twin)
        accounts = "SELECT user_id, points_balance, tier FROM loyalty_accounts ORDER BY user_id"
        assert (
            pg_seeded_db.query(accounts) == twin.query(accounts) and len(pg_seeded_db.query(accounts)) == SEEDED_USERS
        )
        assert run_validation(using=pg_seeded_db.alias).ok
        document = summary.to_dict()
        assert document["online"]["batches"] >= 2 * SEEDED_SUBSCRIPTIONS // 500  # users and subscriptions, batched
        assert document["online"]["longest_lock"]["table"] in ("users", "subscriptions")
        assert (
            pg_seeded_db.scalar("SELECT status FROM migrations_ops_online_run WHERE id = %s", [summary.run_id])
            == "done"
        )
    finally:
        dbs.dispose(twin)


def test_batches_grow_back_from_a_single_page(pg_seeded_db, settings):
    """A batch of one page must not be a trap: with batches far under the target the span grows.

    One stall can halve the span down to a single page (MIN_SPAN); 1.5 x 1 page rounded back down
    to 1, so the walk then went page by page to the end of the table. A batch size of one row
    starts every walk at one page, which is that state.
    """
    settings.MIGRATION_ONLINE_BATCH_SIZE = 1
    settings.MIGRATION_ONLINE_BATCH_TARGET = "10s"
    summary = run_online(pg_seeded_db)
    assert summary.status == "online_applied", summary.error
    online_document = summary.to_dict()["online"]
    pages, batches = online_document["pages_walked"], online_document["batches"]
    assert pages >= 50  # users and subscriptions span enough pages for the growth to show
    assert batches * 3 < pages, f"{batches} batches for {pages} pages: the span did not grow from one page"
    assert run_validation(using=pg_seeded_db.alias).ok


def test_pages_with_nothing_to_change_do_not_grow_the_batch_that_meets_rows_to_change():
    """At 1M rows a run of pages a rename had emptied went by in milliseconds, the span grew to 9,324
    pages on time alone, and the first batch over live rows held their locks 4-5 s (bench/README.md)."""
    cost = BatchCost(first_span=100, rows_per_page=50)
    for _ in range(30):
        cost.measured(pages=4000, changed=0, seconds=0.005)
    assert cost.pages_within(0.1) == 100  # nothing changed yet: the operator's batch, however fast the walk
    cost.measured(pages=100, changed=5000, seconds=0.05)  # 10 us per changed row at most
    worst_page = 0.005 / 4000 + 50 * 0.05 / 5000
    assert cost.pages_within(0.1) == int(0.1 / worst_page) == 199
    cost.measured(pages=100, changed=5000, seconds=0.5)  # a slower batch does not raise the bounds
    assert cost.pages_within(0.1) == 199
    assert BatchCost(first_span=1, rows_per_page=50).pages_within(0.1) == 1


def test_the_application_keeps_reading_and_writing_and_loses_nothing(pg_seeded_db):
    with AppWorkload(pg_seeded_db.url, interval=0.01) as app:
        time.sleep(0.3)  # the application is busy before the run starts
        summary = run_online(pg_seeded_db)
        time.sleep(0.2)
    report = app.report
    assert summary.status == "online_applied", summary.error
    assert report.errors == []
    assert report.rounds > 20 and report.inserted
    # No statement of the application waited for the migration for long (the bench measures the
    # real figure at 1M rows; here a wait of a second would mean a step held its lock throughout).
    assert report.longest_wait_s < 1.0, report
    statuses = dict(
        pg_seeded_db.query("SELECT id, status FROM subscriptions WHERE id = ANY(%s)", [list(report.updated)])
    )
    assert statuses == report.updated
    present = pg_seeded_db.scalar("SELECT count(*) FROM subscriptions WHERE id = ANY(%s)", [report.inserted])
    assert present == len(report.inserted)
    # Old code keeps inserting after the upgrade: the new NOT NULL columns have database defaults.
    old_code = pg_seeded_db.query(
        "INSERT INTO subscriptions (plan, status, price, currency, billing_interval, started_at, created_at, "
        "updated_at, user_id) SELECT 'basic', 'active', 1, 'usd', 'month', now(), now(), now(), id FROM users "
        "LIMIT 1 RETURNING points_earned"
    )
    assert old_code == [(0,)]
    assert pg_seeded_db.scalar("SELECT count(*) FROM users WHERE permissions IS NULL") == 0
    assert run_validation(using=pg_seeded_db.alias).ok


def test_what_would_block_is_refused_before_anything_runs(pg_seeded_db, settings):
    with_apps(settings, "ma_online_unsafe")
    pg_seeded_db.migrate("ma_online_unsafe:0001_initial")
    before, migrations_before = pg_schema(pg_seeded_db), applied_migrations(pg_seeded_db)
    linted = safe_migrate(pg_seeded_db.alias, SafeMigrateOptions(plan_only=True, lint=True))
    assert linted.exit_code == 1 and "3 operation(s) would block" in linted.error
    refusals = linted.to_dict()["online"]["plan"]["refusals"]
    assert [r.split(" (")[0] for r in refusals] == [f"ma_online_unsafe.0002_unsafe operation {i}" for i in range(3)]
    summary = run_online(pg_seeded_db)
    assert summary.exit_code == ExitCode.BAD_INPUT and summary.backup is None
    assert "without any default" in summary.error and "RunPython" in summary.error
    assert "a shorter length (50 -> 20)" in summary.error
    assert pg_schema(pg_seeded_db) == before and applied_migrations(pg_seeded_db) == migrations_before


def test_a_failure_midway_is_undone_without_restore_and_keeps_the_applications_writes(pg_seeded_db, settings):
    with_apps(settings, "ma_online_fail")
    before, migrations_before = pg_schema(pg_seeded_db), applied_migrations(pg_seeded_db)
    with AppWorkload(pg_seeded_db.url, interval=0.01) as app:
        summary = run_online(pg_seeded_db)
    assert summary.exit_code == ExitCode.FAILED, summary.error
    assert summary.status == "rolled_back" and summary.rollback == "online"
    assert "division by zero" in summary.error and "no write of the application was lost" in summary.error
    assert pg_schema(pg_seeded_db) == before
    assert applied_migrations(pg_seeded_db) == migrations_before
    assert app.report.errors == []
    statuses = dict(
        pg_seeded_db.query("SELECT id, status FROM subscriptions WHERE id = ANY(%s)", [list(app.report.updated)])
    )
    assert statuses == app.report.updated
    present = pg_seeded_db.scalar("SELECT count(*) FROM subscriptions WHERE id = ANY(%s)", [app.report.inserted])
    assert present == len(app.report.inserted) > 0
    assert (
        pg_seeded_db.scalar("SELECT status FROM migrations_ops_online_run WHERE id = %s", [summary.run_id]) == "failed"
    )
    assert run_validation(using=pg_seeded_db.alias).ok


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_sqlite_refuses_online_with_one_line(empty_db):
    summary = run_online(empty_db)
    assert summary.exit_code == ExitCode.BAD_INPUT
    assert "needs PostgreSQL" in summary.error and "\n" not in summary.error


@pytest.mark.parametrize("flag", ["resume", "abort"])
def test_resume_and_abort_without_an_unfinished_run_are_bad_input(pg_seeded_db, flag):
    summary = run_online(pg_seeded_db, **{flag: True})
    assert summary.exit_code == ExitCode.BAD_INPUT and "no unfinished online run" in summary.error


# ---------------------------------------------------------------- killed, then resumed or aborted


def _manage(db, *args: str, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "safe_migrate", *args, "--noinput", "--database-url", db.url],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings_subprocess", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill_during_backfill(db, env: dict) -> None:
    """Start an online run and SIGKILL it while it walks subscriptions in batches."""
    proc = _manage(db, "--online", env=env)
    deadline = time.monotonic() + 90
    while not backfill_reached(db, "billing.0003_backfill_subscription_costs"):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the subscriptions backfill"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)


def test_a_killed_run_resumes_to_the_same_end_or_aborts_to_the_start(pg_seeded_db, tmp_path):
    env = {
        "BACKUP_DIR": str(tmp_path / "b"),
        "MIGRATION_LOG": str(tmp_path / "subprocess.log"),
        "MIGRATION_ONLINE_BATCH_SIZE": "100",
        "MIGRATION_ONLINE_BATCH_PAUSE": "30ms",
    }
    twin = dbs.new_database("postgresql", tmp_path, template=pg_seeded_db.name)
    reference = dbs.new_database("postgresql", tmp_path, template=pg_seeded_db.name)
    try:
        before, migrations_before, content_before = (
            pg_schema(pg_seeded_db),
            applied_migrations(pg_seeded_db),
            content(pg_seeded_db),
        )
        assert safe_migrate(reference.alias, SafeMigrateOptions()).status == "applied"

        _kill_during_backfill(pg_seeded_db, env)
        connections[pg_seeded_db.alias].close()
        assert pg_schema(pg_seeded_db) != before  # half expanded: neither the old nor the new schema yet
        again = _manage(pg_seeded_db, "--online", env=env)
        _, err = again.communicate(timeout=60)
        assert again.returncode == ExitCode.BAD_INPUT and "--online --resume" in err

        resumed = _manage(pg_seeded_db, "--online", "--resume", "--json", env=env)
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert json.loads(out)["status"] == "resumed"
        connections[pg_seeded_db.alias].close()
        assert pg_schema(pg_seeded_db) == pg_schema(reference)
        assert subscription_rows(pg_seeded_db) == subscription_rows(reference)
        assert content(pg_seeded_db, ("users",)) == content(reference, ("users",))
        assert run_validation(using=pg_seeded_db.alias).ok

        _kill_during_backfill(twin, env)
        aborted = _manage(twin, "--online", "--abort", env=env)
        out, err = aborted.communicate(timeout=120)
        assert aborted.returncode == 0, err
        assert "Aborted" in out
        connections[twin.alias].close()
        assert pg_schema(twin) == before and applied_migrations(twin) == migrations_before
        assert content(twin) == content_before
        assert run_validation(using=twin.alias).ok
    finally:
        dbs.dispose(twin)
        dbs.dispose(reference)


# ---------------------------------------------------------------- databases that applied the earlier files

EDITED_FOR_ONLINE = [
    ("accounts", "0002_user_permissions"),
    ("accounts", "0003_role_to_permissions"),
    ("loyalty", "0003_create_accounts_for_existing_users"),
    ("billing", "0002_enhanced_subscription_payment_models"),
    ("billing", "0003_backfill_subscription_costs"),
    ("billing", "0004_default_pricing_configs"),
]


def test_databases_that_applied_the_earlier_upgrade_files_still_validate(migrated_db):
    """The upgrade's files were rewritten for --online (RunSQLBatched, db_default): a database that
    applied the earlier versions holds their checksums, which each file lists as reviewed."""
    import importlib

    for app, name in EDITED_FOR_ONLINE:
        module = importlib.import_module(f"{app}.migrations.{name}")
        (earlier,) = module.REVIEWED_CHECKSUMS
        migrated_db.query(
            "UPDATE migrations_ops_applied_checksum SET sha256 = %s WHERE app = %s AND name = %s", [earlier, app, name]
        )
    check = next(c for c in run_validation(using=migrated_db.alias).checks if c.name == "migration_checksums")
    assert check.ok, check.details
    for app, name in EDITED_FOR_ONLINE:
        assert f"{app}.{name}" in check.details["note"]
    # Anything else stored for those files is still an edit nobody reviewed.
    migrated_db.query(
        "UPDATE migrations_ops_applied_checksum SET sha256 = %s WHERE app = 'billing' AND name = %s",
        ["1" * 64, "0003_backfill_subscription_costs"],
    )
    assert not next(c for c in run_validation(using=migrated_db.alias).checks if c.name == "migration_checksums").ok
