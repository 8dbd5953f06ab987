"""MigrationService: the async API and its synchronous twin."""

from __future__ import annotations

import asyncio

from migrations_ops.service import MigrationService
from tests.dbs import latest_migration
from tests.helpers import fingerprint, seed_baseline


def test_async_status_is_usable_as_documented(baseline_db):
    async def main():
        service = MigrationService(using=baseline_db.alias)
        status = await service.get_migration_status()
        return status["current_revision"], len(status["pending_migrations"]), status

    current, pending, status = asyncio.run(main())
    assert current["billing"] == "0001_initial"
    assert pending == status["pending_count"] > 0
    first = status["pending_migrations"][0]
    assert first["revision"] == f"{first['app']}.{first['name']}" and first["description"]


def test_sync_twin_agrees_and_follows_migrations(baseline_db):
    service = MigrationService(using=baseline_db.alias)
    before = service.get_migration_status_sync()
    assert before == asyncio.run(service.get_migration_status())
    baseline_db.migrate()
    after = service.get_migration_status_sync()
    assert after["pending_migrations"] == [] and after["pending_count"] == 0
    assert after["current_revision"]["billing"] == latest_migration("billing")
    assert after["applied_count"] == before["applied_count"] + before["pending_count"]


def test_run_migrations_is_safe_migrate_as_the_runbook_uses_it(baseline_db, settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "migration.log"
    service = MigrationService(using=baseline_db.alias)
    pending = service.get_migration_status_sync()["pending_count"]

    async def main():
        result = await service.run_migrations()
        status = await service.get_migration_status()
        return result, status

    result, status = asyncio.run(main())
    assert result["status"] == "applied", result["error"]
    assert result["applied_count"] == pending == len(result["applied"])
    assert result["exit_code"] == 0 and result["backup"]
    assert status["pending_count"] == 0

    again = service.run_migrations_sync()
    assert again["status"] == "nothing_to_do" and again["applied_count"] == 0


def test_run_migrations_reports_a_failure_instead_of_raising(baseline_db, settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "migration.log"
    service = MigrationService(using=baseline_db.alias)
    result = service.run_migrations_sync("billing.nonexistent")
    assert result["status"] == "failed" and result["exit_code"] == 2
    assert "nonexistent" in result["error"]
    assert service.get_migration_status_sync()["current_revision"]["billing"] == "0001_initial"


def test_an_unknown_option_is_refused_like_a_bad_combination(baseline_db, settings, tmp_path):
    """A typo (``dryrun``) is bad input: exit 2 and one line, not a TypeError, and nothing touched."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "migration.log"
    service = MigrationService(using=baseline_db.alias)
    before = fingerprint(baseline_db)
    result = service.run_migrations_sync(dryrun=True)
    assert (result["status"], result["exit_code"]) == ("failed", 2)
    assert result["error"].startswith("unknown option dryrun") and "dry_run" in result["error"]
    assert "\n" not in result["error"]
    assert asyncio.run(service.run_migrations("billing", plan=True))["error"].startswith("unknown option plan")
    assert fingerprint(baseline_db) == before
    assert not settings.MIGRATION_LOG.exists()
    assert service.get_migration_status_sync()["current_revision"]["billing"] == "0001_initial"


def test_a_target_field_among_the_options_is_refused(baseline_db, settings, tmp_path):
    settings.MIGRATION_LOG = tmp_path / "migration.log"
    result = MigrationService(using=baseline_db.alias).run_migrations_sync("billing", app_label="accounts")
    assert (result["status"], result["exit_code"]) == ("failed", 2)
    assert result["error"].startswith("unknown option app_label") and "\n" not in result["error"]
    assert not settings.MIGRATION_LOG.exists()


def test_allow_row_loss_given_as_one_string_names_one_table(baseline_db, settings, tmp_path):
    """``allow_row_loss="loyalty_accounts"`` allows that table (it became the set of its letters):
    migrating loyalty back before 0003 is then refused for pricing_configs alone."""
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "migration.log"
    seed_baseline(baseline_db)
    baseline_db.migrate()
    before = fingerprint(baseline_db)
    service = MigrationService(using=baseline_db.alias)
    one = service.run_migrations_sync("loyalty.0002", allow_row_loss="loyalty_accounts")
    assert one["exit_code"] == 1 and "row_count_guard" in one["error"]
    assert "pricing_configs" in one["error"] and "loyalty_accounts" not in one["error"]
    assert fingerprint(baseline_db) == before
    both = service.run_migrations_sync("loyalty.0002", allow_row_loss=("loyalty_accounts", "pricing_configs"))
    assert both["status"] == "applied", both["error"]
