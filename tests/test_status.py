"""migration_status: current per app, pending in plan order with descriptions, history, --check."""

from __future__ import annotations

import json

from django.db.migrations.recorder import MigrationRecorder

from migrations_ops import status
from tests.dbs import manage_env, run_manage
from tests.helpers import manage_with_project_settings

MERGE_FIX = "fix with 'python manage.py makemigrations --merge'"


def test_pending_migrations_in_plan_order_with_descriptions(baseline_db):
    document = status.migration_status(baseline_db.alias)
    assert document["current"]["billing"] == "0001_initial" and document["current"]["accounts"] == "0001_initial"
    revisions = [entry["revision"] for entry in document["pending"]]
    assert document["pending_count"] == len(revisions) > 0
    assert all(entry["revision"] == f"{entry['app']}.{entry['name']}" for entry in document["pending"])
    # plan order: every dependency comes before its dependants
    assert revisions.index("billing.0002_enhanced_subscription_payment_models") < revisions.index(
        "billing.0003_backfill_subscription_costs"
    )
    assert revisions.index("loyalty.0001_initial") < revisions.index(
        "billing.0002_enhanced_subscription_payment_models"
    )
    described = {entry["revision"]: entry["description"] for entry in document["pending"]}
    # the docstring's first paragraph, on one line
    assert described["billing.0003_backfill_subscription_costs"] == (
        "Backfill existing subscriptions: cost breakdown from the baseline price, and the owner's loyalty account."
    )
    # no docstring: the operations' describe()
    assert described["sessions.0001_initial"] == "Create model Session"
    assert described["migrations_ops.0001_initial"].startswith("Checksums of applied migration files")
    assert document["applied_count"] == len(baseline_db.query("SELECT 1 FROM django_migrations"))


def test_history_in_applied_order(migrated_db):
    history = status.migration_history(migrated_db.alias)
    revisions = [entry["revision"] for entry in history]
    assert revisions.index("billing.0001_initial") < revisions.index(
        "billing.0002_enhanced_subscription_payment_models"
    )
    assert all(entry["applied"][:4].isdigit() for entry in history)
    assert status.migration_status(migrated_db.alias)["pending"] == []


def test_empty_database_has_everything_pending_and_is_not_touched(empty_db):
    document = status.migration_status(empty_db.alias, history=True)
    assert document["current"] == {} and document["applied_count"] == 0 and document["history"] == []
    assert document["pending_count"] >= 30
    with empty_db.connection.cursor() as cursor:  # reading created no django_migrations table
        assert empty_db.connection.introspection.table_names(cursor) == []


def test_migration_status_check_exit_codes_before_and_after_migrating(baseline_db):
    db = baseline_db
    before = manage_with_project_settings(db, "migration_status", "--check")
    assert before.returncode == 1
    assert "billing.0002_enhanced_subscription_payment_models: Enhanced subscription payment models" in before.stdout
    assert before.stderr.startswith("error: ") and "pending: " in before.stderr

    as_json = manage_with_project_settings(db, "migration_status", "--check", "--json")
    assert as_json.returncode == 1
    document = json.loads(as_json.stdout)
    keys = {"current", "pending", "applied_count", "pending_count", "conflicts", "window", "online_run"}
    assert set(document) == keys
    assert document["conflicts"] == {} and document["window"] is None  # no expand/contract window open
    assert document["online_run"] is None  # no online run running
    assert set(document["pending"][0]) == {"app", "name", "revision", "description"}

    db.migrate()
    db.connection.close()
    after = manage_with_project_settings(db, "migration_status", "--check", "--history")
    assert after.returncode == 0, after.stderr
    assert "No pending migrations" in after.stdout
    assert "billing.0002_enhanced_subscription_payment_models" in after.stdout  # in the history
    assert json.loads(manage_with_project_settings(db, "migration_status", "--json").stdout)["pending_count"] == 0


def with_conflict_app(settings) -> None:
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "tests.migration_apps.ma_conflict.apps.Config"]


def manage_with_conflict(db, *args: str):
    """manage.py with the test app ma_conflict installed: two leaves, 0002_left and 0002_right, on 0001."""
    return run_manage(db.url, *args, env=manage_env(TEST_MIGRATION_APPS="ma_conflict"))


def test_conflicting_leaves_are_shown_in_text_and_json_and_fail_check(migrated_db, settings):
    db = migrated_db
    with_conflict_app(settings)
    document = status.migration_status(db.alias)
    assert document["conflicts"] == {"ma_conflict": ["0002_left", "0002_right"]}
    assert "Conflicting migrations" in status.render_status(document)

    text = manage_with_conflict(db, "migration_status")
    assert text.returncode == 0, text.stderr  # showing is no failure; --check is
    assert "Conflicting migrations" in text.stdout and MERGE_FIX in text.stdout
    assert "  ma_conflict: 0002_left, 0002_right" in text.stdout

    as_json = manage_with_conflict(db, "migration_status", "--json")
    assert as_json.returncode == 0, as_json.stderr
    document = json.loads(as_json.stdout)
    assert document["conflicts"] == {"ma_conflict": ["0002_left", "0002_right"]}
    assert {"current", "pending", "applied_count", "pending_count"} <= set(document)  # the contract's keys stay

    check = manage_with_conflict(db, "migration_status", "--check")
    assert check.returncode == 1
    assert "0002_left, 0002_right in ma_conflict" in check.stderr and MERGE_FIX in check.stderr


def test_check_fails_on_a_conflict_with_nothing_pending(migrated_db, settings):
    """Both leaves recorded as applied (as after two branches were deployed): nothing is pending, but the
    graph still has two leaves, and the next makemigrations or migrate will trip over them."""
    db = migrated_db
    with_conflict_app(settings)
    recorder = MigrationRecorder(db.connection)
    for name in ("0001_initial", "0002_left", "0002_right"):
        recorder.record_applied("ma_conflict", name)
    db.connection.close()
    document = status.migration_status(db.alias)
    assert document["pending"] == [] and document["conflicts"] == {"ma_conflict": ["0002_left", "0002_right"]}

    check = manage_with_conflict(db, "migration_status", "--check", "--json")
    assert check.returncode == 1
    assert json.loads(check.stdout)["conflicts"] == {"ma_conflict": ["0002_left", "0002_right"]}
    assert "conflicting migrations" in check.stderr and "ma_conflict" in check.stderr and MERGE_FIX in check.stderr
