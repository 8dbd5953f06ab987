"""Rollback that keeps other clients' writes: segments, reversal, and restore only when allowed."""

from __future__ import annotations

import threading
import time

import pytest

from migrations_ops import audit, backups
from migrations_ops.errors import ExitCode
from tests.helpers import add_customer, fingerprint, run_safe_migrate, with_apps
from tests.reliability.harness import pg


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    settings.MIGRATION_LOCK_TIMEOUT = "2s"


def test_plan_shows_segments_and_their_rollback(migrated_db, settings):
    with_apps(settings, "ma_segments", "ma_irreversible")
    planned = run_safe_migrate(migrated_db, plan_only=True)
    assert planned.plan.rollback_path == "restore"  # ma_irreversible 0001 can only be undone by the backup
    segments = planned.to_dict()["plan"]["segments"]
    assert {"steps": ["ma_segments.0002_weight"], "atomic": False, "rollback": "reverse"} in segments
    assert {"steps": ["ma_irreversible.0002_fails"], "atomic": False, "rollback": "reverse"} in segments
    atomic = [s for s in segments if s["atomic"]]
    assert any("ma_irreversible.0001_initial" in s["steps"] and s["rollback"] == "restore" for s in atomic)
    assert "segment 1:" in planned.plan.render()


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_failed_non_atomic_step_keeps_the_applications_writes(migrated_db, settings, monkeypatch):
    """The issue's measurement: the last migration is non-atomic and fails seconds in while the
    application updates a subscription every ~50 ms. Reversing (not restoring) keeps every update."""
    with_apps(settings, "ma_segments")
    monkeypatch.setenv("MA_SEGMENTS_SECONDS", "2")
    for n in range(5):
        add_customer(migrated_db, email=f"c{n}@example.com")
    before = fingerprint(migrated_db)
    written: dict[int, str] = {}
    stop = threading.Event()

    def application():
        conn = pg(migrated_db)
        conn.autocommit = True
        ids = [row[0] for row in _query(conn, "SELECT id FROM subscriptions ORDER BY id")]
        tick = 0
        while not stop.is_set():
            tick += 1
            sid = ids[tick % len(ids)]
            _query(conn, "UPDATE subscriptions SET plan = %s WHERE id = %s RETURNING id", [f"p{tick}", sid])
            written[sid] = f"p{tick}"
            time.sleep(0.05)
        conn.close()

    writer = threading.Thread(target=application)
    writer.start()
    try:
        summary = run_safe_migrate(migrated_db)
    finally:
        stop.set()
        writer.join()
    assert summary.exit_code == ExitCode.FAILED, summary.error
    assert summary.status == "rolled_back" and summary.rollback == "reverse", summary.error
    assert summary.reversed == ["ma_segments.0002_weight (its 1 completed operation(s))", "ma_segments.0001_initial"]
    assert len(written) == 5
    kept = dict(migrated_db.query("SELECT id, plan FROM subscriptions"))
    assert {sid: kept[sid] for sid in written} == written  # not one update lost
    after = fingerprint(migrated_db)
    assert after["schema"] == before["schema"]
    assert "ma_parts" not in after["schema"]


def test_irreversible_step_needs_allow_data_loss_to_restore(migrated_db, settings):
    """Reversing is impossible (a RunPython without reverse committed): exit 4 naming the backup and
    what a restore would discard; with --allow-data-loss the backup is restored."""
    with_apps(settings, "ma_irreversible")
    add_customer(migrated_db)
    before = fingerprint(migrated_db)
    refused = run_safe_migrate(migrated_db)
    assert refused.exit_code == ExitCode.RECOVERY_FAILED, refused.error
    assert "--allow-data-loss" in refused.error and refused.backup in refused.error
    assert "ma_bins" in fingerprint(migrated_db)["schema"]  # left as it is for the operator
    assert backups.get_backup(refused.backup).reason == "pre-migrate"

    migrated_db.query("DROP TABLE ma_bins")  # the operator undoes it by hand ...
    migrated_db.query("DELETE FROM django_migrations WHERE app = 'ma_irreversible'")
    assert fingerprint(migrated_db)["schema"] == before["schema"]
    restored = run_safe_migrate(migrated_db, allow_data_loss=True)  # ... and next time allows the restore
    assert restored.exit_code == ExitCode.FAILED, restored.error
    assert restored.status == "restored" and restored.rollback == "restore"
    assert fingerprint(migrated_db)["schema"] == before["schema"]
    assert any(e["event"] == "safe_migrate.reverse_failed" for e in audit.read_events())


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_rows_other_clients_write_do_not_fail_the_recovery_check(migrated_db, settings, monkeypatch):
    """The second defect of the issue: after a rollback, the application's writes are not a
    'database NOT as before' (exit 4); only schema and django_migrations are the plan's."""
    with_apps(settings, "ma_segments")
    monkeypatch.setenv("MA_SEGMENTS_SECONDS", "1")
    marker = settings.BACKUP_DIR.parent / "running"
    monkeypatch.setenv("MA_SEGMENTS_MARKER", str(marker))
    add_customer(migrated_db)

    def insert_when_running():
        while not marker.exists():
            time.sleep(0.02)
        conn = pg(migrated_db)
        conn.autocommit = True
        _query(conn, "DELETE FROM subscriptions RETURNING id")  # row counts now differ from the pre-state
        conn.close()

    inserter = threading.Thread(target=insert_when_running)
    inserter.start()
    summary = run_safe_migrate(migrated_db)
    inserter.join()
    assert summary.exit_code == ExitCode.FAILED, summary.error
    assert summary.rollback == "reverse"
    assert migrated_db.scalar("SELECT COUNT(*) FROM subscriptions") == 0  # the application's delete stands


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_row_count_guard_counts_only_the_plans_own_deletes(migrated_db, settings, monkeypatch):
    """Rows the application deletes while the plan runs are not the plan's loss (exit 0)."""
    with_apps(settings, "ma_slow")
    marker = settings.BACKUP_DIR.parent / "slow"
    monkeypatch.setenv("MA_SLOW_MARKER", str(marker))
    monkeypatch.setenv("MA_SLOW_SECONDS", "1")
    add_customer(migrated_db, email="a@example.com")
    add_customer(migrated_db, email="b@example.com")

    def delete_when_running():
        while not marker.exists():
            time.sleep(0.02)
        conn = pg(migrated_db)
        conn.autocommit = True
        _query(conn, "DELETE FROM subscriptions WHERE id = (SELECT min(id) FROM subscriptions) RETURNING id")
        conn.close()

    deleter = threading.Thread(target=delete_when_running)
    deleter.start()
    summary = run_safe_migrate(migrated_db)
    deleter.join()
    assert summary.status == "applied", summary.error
    assert migrated_db.scalar("SELECT COUNT(*) FROM subscriptions") == 1


def _query(conn, sql, params=None):
    with conn.cursor() as cursor:
        cursor.execute(sql, params or [])
        return cursor.fetchall()
