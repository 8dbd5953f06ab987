"""MigrationService: the async API and its synchronous twin."""

from __future__ import annotations

import asyncio

from migrations_ops.service import MigrationService
from tests.dbs import latest_migration


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
