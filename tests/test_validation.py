"""validate_db on both engines: every check passes on a clean seeded database and fails on one
crafted to break it (and nothing else fails with it)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from django.db import connections, transaction

from billing.models import PricingConfig
from migrations_ops import checks, checksums
from migrations_ops.validation import run_validation
from tests.helpers import check_result, failing_checks, manage_with_project_settings, seed_consistent_data

ROOT = Path(__file__).resolve().parent.parent
UTC = dt.UTC


@pytest.fixture
def seeded_db(migrated_db):
    return migrated_db, seed_consistent_data(migrated_db)


def only_failure(alias: str, check: str, **options) -> dict:
    """Validate `alias`; exactly `check` must fail. Its details, for the test to look into."""
    report = run_validation(alias, **options)
    assert failing_checks(report) == {check}, report.render()
    return check_result(report, check).details


def insert_orphan_transaction(db) -> int:
    """A points transaction whose account does not exist, written past the foreign key."""
    sql = (
        "INSERT INTO points_transactions (account_id, points, kind, balance_after, description, created_at) "
        "VALUES (987654, 10, 'earn', 10, 'orphan', CURRENT_TIMESTAMP)"
    )
    if db.vendor == "postgresql":
        with db.connection.cursor() as cursor:
            cursor.execute("SET session_replication_role = replica")
            cursor.execute(sql)
            cursor.execute("SET session_replication_role = DEFAULT")
    else:
        with db.connection.cursor() as cursor:
            cursor.execute("PRAGMA foreign_keys = OFF")
            cursor.execute(sql)
            cursor.execute("PRAGMA foreign_keys = ON")
    return db.scalar("SELECT MAX(id) FROM points_transactions")


# --- clean databases -------------------------------------------------------------------------------


def test_clean_seeded_database_passes_every_check(seeded_db):
    db, _ = seeded_db
    report = run_validation(db.alias, deep=True)
    assert report.ok, report.render()
    names = {r.name for r in report.checks}
    vendor_checks = (
        {"quick_check", "integrity_check"} if db.vendor == "sqlite" else {"not_valid_constraints", "indexes", "amcheck"}
    )
    assert (
        names
        >= {
            "foreign_keys",
            "schema_matches_models",
            "migration_history_consistent",
            "migrations_complete",
            "migration_checksums",
            "billing.subscription_total_cost",
            "billing.pricing_configs_no_overlap",
            "loyalty.balance_matches_transactions",
            "loyalty.balance_after_chain",
            "analytics.subscription_analytics_unique_per_day",
            "analytics.payment_analytics_unique_per_day",
        }
        | vendor_checks
    )
    assert report.tables["subscriptions"] == 3
    assert report.tables["points_transactions"] == 4
    assert check_result(report, "migration_checksums").details["checked"] >= 15  # recorded by the template's migrate
    document = report.to_dict()
    assert set(document) >= {"ok", "checks", "tables"}
    assert all({"name", "ok", "details"} <= set(check) for check in document["checks"])
    json.dumps(document)  # serialisable as is


def test_quick_run_leaves_out_deep_checks(migrated_db):
    names = {r.name for r in run_validation(migrated_db.alias).checks}
    assert "amcheck" not in names and "integrity_check" not in names


def test_domain_checks_skip_before_their_tables_exist(baseline_db):
    report = run_validation(baseline_db.alias)
    assert report.ok, report.render()
    loyalty = check_result(report, "loyalty.balance_matches_transactions")
    assert loyalty.skipped and "loyalty_accounts" in loyalty.reason
    cost = check_result(report, "billing.subscription_total_cost")
    assert cost.skipped and "subscriptions.total_cost" in cost.reason
    # the schema is compared with the *migrated* models: pending columns are not "missing"
    assert not check_result(report, "schema_matches_models").skipped


# --- crafted breakage, both engines ----------------------------------------------------------------


def test_orphan_row_fails_foreign_keys(seeded_db):
    db, _ = seeded_db
    orphan = insert_orphan_transaction(db)
    details = only_failure(db.alias, "foreign_keys")
    assert details["count"] == 1
    (problem,) = details["orphans"]
    assert problem["table"] == "points_transactions"
    assert str(orphan) in str(problem["first"][0])


def test_loyalty_balance_edited_by_hand(seeded_db):
    db, data = seeded_db
    account = data["accounts"][0]
    db.query("UPDATE loyalty_accounts SET points_balance = points_balance + 5 WHERE id = %s", [account.pk])
    details = only_failure(db.alias, "loyalty.balance_matches_transactions")
    assert details["count"] == 1 and details["first"] == [[account.pk, 80, 75]]


def test_broken_balance_after_chain(seeded_db):
    db, data = seeded_db
    middle = data["transactions"][1]
    db.query("UPDATE points_transactions SET balance_after = 71 WHERE id = %s", [middle.pk])
    details = only_failure(db.alias, "loyalty.balance_after_chain")
    assert details["count"] == 1 and details["first"][0][:3] == [middle.pk, middle.account_id, 71]


def test_total_cost_not_matching_its_components(seeded_db):
    db, data = seeded_db
    ids = [s.pk for s in data["subscriptions"][1:]]
    db.query("UPDATE subscriptions SET total_cost = total_cost + 0.01 WHERE id IN (%s, %s)", ids)
    details = only_failure(db.alias, "billing.subscription_total_cost")
    assert details["count"] == 2 and [row[0] for row in details["first"]] == sorted(ids)


def test_overlapping_active_pricing_configs(seeded_db):
    db, _ = seeded_db
    if db.vendor == "postgresql":  # the exclusion constraint would refuse the row: a database without it
        db.query("ALTER TABLE pricing_configs DROP CONSTRAINT pricing_configs_no_active_overlap")
    clash = PricingConfig.objects.using(db.alias).create(
        name="clash", plan="basic", variant_id="large", base_price=1, effective_from=dt.datetime(2024, 5, 1, tzinfo=UTC)
    )
    details = only_failure(db.alias, "billing.pricing_configs_no_overlap")
    assert details["count"] == 2  # overlaps both windows of the variant
    assert all(clash.pk in row[:2] for row in details["first"])


def test_inactive_or_other_variant_configs_do_not_overlap(seeded_db):
    db, _ = seeded_db
    if db.vendor == "postgresql":
        db.query("ALTER TABLE pricing_configs DROP CONSTRAINT pricing_configs_no_active_overlap")
    start = dt.datetime(2024, 5, 1, tzinfo=UTC)
    PricingConfig.objects.using(db.alias).create(
        name="off", plan="basic", variant_id="large", base_price=1, effective_from=start, is_active=False
    )
    PricingConfig.objects.using(db.alias).create(
        name="small", plan="basic", variant_id="small", base_price=1, effective_from=start
    )
    assert run_validation(db.alias, only=["billing.pricing_configs_no_overlap"]).ok


def test_two_analytics_rows_for_one_day(seeded_db):
    db, _ = seeded_db
    if db.vendor == "postgresql":
        name = db.scalar(
            "SELECT conname FROM pg_constraint WHERE conrelid = 'subscription_analytics'::regclass AND contype = 'u'"
        )
        db.query(f'ALTER TABLE subscription_analytics DROP CONSTRAINT "{name}"')
    else:  # SQLite cannot drop an inline UNIQUE: rebuild the table without it
        db.query("ALTER TABLE subscription_analytics RENAME TO sa_old")
        db.query("CREATE TABLE subscription_analytics AS SELECT * FROM sa_old")
        db.query("DROP TABLE sa_old")
    db.query(
        "INSERT INTO subscription_analytics (id, date, active_subscriptions, new_subscriptions,"
        " cancelled_subscriptions, paused_subscriptions, mrr, churn_rate, computed_at)"
        " VALUES (99, '2024-01-02', 1, 0, 0, 0, 0, 0, '2024-01-03')"
    )
    report = run_validation(db.alias, only=["analytics.subscription_analytics_unique_per_day"])
    details = check_result(report, "analytics.subscription_analytics_unique_per_day").details
    assert not report.ok and details["count"] == 1 and details["first"] == [["2024-01-02", 2]]


def test_column_dropped_behind_djangos_back(seeded_db):
    db, _ = seeded_db
    db.query("ALTER TABLE subscriptions DROP COLUMN variant_name")
    details = only_failure(db.alias, "schema_matches_models")
    assert details["first"] == ["column subscriptions.variant_name (billing.Subscription.variant_name) is missing"]


def test_table_dropped_behind_djangos_back(migrated_db):
    migrated_db.query("DROP TABLE payment_analytics")
    report = run_validation(migrated_db.alias)
    assert failing_checks(report) == {"schema_matches_models"}
    assert (
        "table payment_analytics (analytics.PaymentAnalytics) is missing"
        in (check_result(report, "schema_matches_models").details["first"])
    )
    assert check_result(report, "analytics.payment_analytics_unique_per_day").skipped


def test_inconsistent_migration_history(migrated_db):
    migrated_db.query("DELETE FROM django_migrations WHERE app = 'loyalty' AND name = '0001_initial'")
    details = only_failure(migrated_db.alias, "migration_history_consistent")
    assert "loyalty.0001_initial" in details["error"]


# --- migration files: checksums and missing migrations (on test-only copies) ----------------------


def test_applied_migration_file_edited_afterwards(migrated_db, analytics_migrations_copy):
    path = analytics_migrations_copy
    assert run_validation(migrated_db.alias).ok  # the copy is identical to what was applied

    # whitespace-only edits are not edits
    text = path.read_text()
    path.write_text("\n\n" + text.replace("\n", "   \r\n") + "\n\n")
    assert run_validation(migrated_db.alias, only=["migration_checksums"]).ok

    path.write_text(text.replace("class Migration", "# edited after it was applied\nclass Migration", 1))
    details = only_failure(migrated_db.alias, "migration_checksums")
    (changed,) = details["changed"]
    assert changed["migration"] == "analytics.0001_initial"
    assert changed["file"] == str(path)


def test_reviewed_edit_of_an_applied_migration_passes_with_a_note(migrated_db, analytics_migrations_copy):
    path = analytics_migrations_copy
    text = path.read_text()
    stored = checksums.file_checksum(path)
    edited = text.replace("class Migration", "# reviewed edit\nclass Migration", 1)
    path.write_text(edited)
    (changed,) = check_result(run_validation(migrated_db.alias), "migration_checksums").details["changed"]
    assert changed["stored"] == stored  # the whole checksum, ready to paste into REVIEWED_CHECKSUMS

    # A review without a reason does not count.
    path.write_text(edited + f'\nREVIEWED_CHECKSUMS = {{"{stored}": "  "}}\n')
    assert failing_checks(run_validation(migrated_db.alias)) == {"migration_checksums"}

    path.write_text(edited + f'\nREVIEWED_CHECKSUMS = {{"{stored}": "adds db_default only"}}\n')
    check = check_result(run_validation(migrated_db.alias), "migration_checksums")
    assert check.ok
    assert "analytics.0001_initial: adds db_default only" in check.details["note"]

    # The review covers that earlier version only: a database that applied another one still fails.
    migrated_db.query(
        "UPDATE migrations_ops_applied_checksum SET sha256 = %s WHERE app = 'analytics' AND name = '0001_initial'",
        ["0" * 64],
    )
    assert failing_checks(run_validation(migrated_db.alias)) == {"migration_checksums"}


def test_model_change_without_a_migration(migrated_db, analytics_migrations_copy):
    path = analytics_migrations_copy
    text = path.read_text()
    start = text.index('("churn_rate"')
    end = text.index("\n", text.index("),", start)) + 1  # the whole field tuple, however it is wrapped
    path.write_text(text[:start] + text[end:])
    report = run_validation(migrated_db.alias)
    # the model has a field no migration adds (and the migration file itself was edited)
    assert failing_checks(report) == {"migrations_complete", "migration_checksums"}
    first = check_result(report, "migrations_complete").details["first"]
    assert any(line.startswith("analytics: Add field churn_rate") for line in first), first


def test_checksums_follow_migrate_forwards_and_backwards(migrated_db):
    db = migrated_db
    recorded = lambda: {  # noqa: E731
        f"{app}.{name}" for app, name in db.query("SELECT app, name FROM migrations_ops_applied_checksum")
    }
    assert "loyalty.0003_create_accounts_for_existing_users" in recorded()
    db.migrate("loyalty:0002_pointstransaction_payment_intent")
    assert "loyalty.0003_create_accounts_for_existing_users" not in recorded()
    db.migrate("loyalty:0003_create_accounts_for_existing_users")
    assert "loyalty.0003_create_accounts_for_existing_users" in recorded()
    baseline = db.scalar(
        "SELECT baseline FROM migrations_ops_applied_checksum WHERE app = 'loyalty' AND name = %s",
        ["0003_create_accounts_for_existing_users"],
    )
    assert baseline in (False, 0)  # recorded when applied, not as a baseline


def test_checksums_of_migrations_applied_earlier_are_baselined(baseline_db):
    db = baseline_db
    db.migrate()
    rows = dict(db.query("SELECT app || '.' || name, baseline FROM migrations_ops_applied_checksum"))
    assert rows["billing.0001_initial"] in (True, 1)  # applied before the table existed
    assert rows["billing.0002_enhanced_subscription_payment_models"] in (False, 0)
    assert run_validation(db.alias, only=["migration_checksums"]).ok


def test_checksums_skipped_before_the_table_exists(baseline_db):
    check = check_result(run_validation(baseline_db.alias, only=["migration_checksums"]), "migration_checksums")
    assert check.skipped and "migrations_ops_applied_checksum" in check.reason


# --- the contract with safe_migrate: inside the caller's transaction -------------------------------


def test_runs_inside_the_callers_transaction_without_committing(seeded_db):
    db, data = seeded_db

    @checks.register("test.broken_sql")
    def broken(connection):
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM no_such_table")

    try:
        with transaction.atomic(using=db.alias):
            db.query("UPDATE loyalty_accounts SET points_balance = 1 WHERE id = %s", [data["accounts"][0].pk])
            report = run_validation(db.alias)
            # the failing statement was confined to its savepoint: later checks still ran and passed
            assert failing_checks(report) == {"test.broken_sql", "loyalty.balance_matches_transactions"}
            assert "no_such_table" in check_result(report, "test.broken_sql").details["error"]
            assert connections[db.alias].in_atomic_block
            transaction.set_rollback(True, using=db.alias)
    finally:
        checks.unregister("test.broken_sql")
    assert run_validation(db.alias).ok  # nothing was committed by the checks


# --- SQLite engine checks ----------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_sqlite_quick_check_finds_a_check_constraint_violation(seeded_db):
    db, data = seeded_db
    target = data["subscriptions"][0].pk
    with db.connection.cursor() as cursor:
        cursor.execute("PRAGMA ignore_check_constraints = ON")
        cursor.execute("UPDATE subscriptions SET price = -1 WHERE id = %s", [target])
        cursor.execute("PRAGMA ignore_check_constraints = OFF")
    details = only_failure(db.alias, "quick_check")
    assert "CHECK constraint failed in subscriptions" in details["first"][0]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_sqlite_deep_integrity_check_finds_index_not_matching_table(seeded_db):
    db, _ = seeded_db
    db.query("CREATE INDEX crafted_ix ON subscriptions (plan)")
    with db.connection.cursor() as cursor:  # rewrite the index's definition under its content
        cursor.execute("PRAGMA writable_schema = ON")
        cursor.execute(
            "UPDATE sqlite_schema SET sql = 'CREATE INDEX crafted_ix ON subscriptions (status)' "
            "WHERE name = 'crafted_ix'"
        )
        cursor.execute("PRAGMA writable_schema = OFF")
    db.connection.close()
    assert run_validation(db.alias).ok  # quick_check does not compare indexes with their table
    details = only_failure(db.alias, "integrity_check", deep=True)
    assert "missing from index crafted_ix" in details["first"][0]


# --- the command -------------------------------------------------------------------------------------


def test_validate_db_command_json_and_exit_codes(seeded_db):
    db, _ = seeded_db
    done = manage_with_project_settings(db, "validate_db", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["ok"] is True and document["tables"]["subscriptions"] == 3
    assert all(check["ok"] for check in document["checks"])

    insert_orphan_transaction(db)
    db.connection.close()
    done = manage_with_project_settings(db, "validate_db")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("✗ foreign_keys (") and line.endswith(" ms)") for line in lines), done.stdout
    assert any(line.startswith("✓ schema_matches_models (") for line in lines)
    assert "points_transactions" in done.stdout  # the details, under the failing line
    assert done.stderr.strip() == "error: validation failed: foreign_keys"


def test_validate_db_unreachable_database_is_exit_2(tmp_path):
    class Missing:
        url = "postgres://postgres@127.0.0.1:5432/no_such_database_for_validate_db"

    done = manage_with_project_settings(Missing, "validate_db")
    assert done.returncode == 2
    assert done.stderr.startswith("error: database unreachable") and len(done.stderr.strip().splitlines()) == 1


# --- --accept-existing-issues compares problems by identity -------------------------------------


def test_problems_are_compared_by_identity_not_by_the_text_around_them():
    def problems(**details):
        return checks.CheckResult(name="c", ok=False, details=details).problems()

    old = problems(count=2, models_checked=40, first=["users.a is missing", "users.b is missing"], fix="run x")
    # More models examined, other wording around the problems: the same problems.
    assert problems(count=2, models_checked=41, first=["users.b is missing", "users.a is missing"]).within(old)
    assert problems(count=1, models_checked=41, first=["users.a is missing"]).within(old)  # one fixed
    # A new offending object, or more of them than before behind the same sample, is new.
    assert not problems(count=2, models_checked=40, first=["users.a is missing", "users.c is missing"]).within(old)
    assert not problems(count=3, models_checked=40, first=["users.a is missing", "users.b is missing"]).within(old)

    # Objects in a list are known by their descriptive fields; their counts are per object.
    fk = {"table": "subscriptions", "references": "users(id)"}
    old = problems(count=1, foreign_keys=9, orphans=[{**fk, "count": 1, "first": ["id=1 -> user_id=7"]}])
    assert problems(count=1, foreign_keys=12, orphans=[{**fk, "count": 1, "first": ["id=1 -> user_id=7"]}]).within(
        old
    )
    assert not problems(count=2, orphans=[{**fk, "count": 2, "first": ["id=1 -> user_id=7"]}]).within(old)
    other = {"table": "loyalty_accounts", "references": "users(id)"}
    assert not problems(count=1, orphans=[{**other, "count": 1, "first": ["id=1 -> user_id=7"]}]).within(old)
    # A migration file edited again is a new problem (its checksum now differs from the accepted one).
    edit = {"migration": "a.0001", "file": "a/0001.py", "stored": "s", "now": "n1", "baseline": False}
    old = problems(count=1, checked=20, changed=[edit])
    assert problems(count=1, checked=21, changed=[edit]).within(old)
    assert not problems(count=1, checked=21, changed=[{**edit, "now": "n2"}]).within(old)


# --- schema_matches_models and the relations it cannot read like plain tables ---------------------


def test_virtual_tables_views_unmanaged_and_proxy_models_are_left_out_with_the_reason(migrated_db, settings):
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.migration_apps.ma_virtual.apps.Config"]
    migrated_db.migrate("ma_virtual:0001_initial")
    check = check_result(run_validation(migrated_db.alias, only=["schema_matches_models"]), "schema_matches_models")
    # No "column ma_entries_search.rowid is missing", no "title is NULL, the models say NOT NULL".
    assert check.ok, check.details
    kind = {"sqlite": "SQLite virtual table", "postgresql": "PostgreSQL view"}[migrated_db.vendor]
    assert check.details["not_checked"] == {
        f"{kind}: only its existence is checked": ["ma_entries_search"],
        "proxy model: no table of its own": ["ma_virtual.ShortEntry"],
        "unmanaged: Django creates no table": ["ma_virtual.Source"],
    }
    # Existence is still checked.
    drop = {"sqlite": "DROP TABLE ma_entries_search", "postgresql": "DROP VIEW ma_entries_search"}
    migrated_db.query(drop[migrated_db.vendor])
    check = check_result(run_validation(migrated_db.alias, only=["schema_matches_models"]), "schema_matches_models")
    assert check.details["first"] == ["table ma_entries_search (ma_virtual.Entry) is missing"]
