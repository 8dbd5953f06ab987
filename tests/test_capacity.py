"""The warnings safe_migrate gives before a backfill the server's settings cannot carry at full speed
(migrations_ops/capacity.py): which setting, by how much, and the value that fits."""

from __future__ import annotations

import pytest

from migrations_ops import audit, capacity
from migrations_ops.api import safe_migrate
from migrations_ops.capacity import TableRewrite
from migrations_ops.engines import get_engine
from migrations_ops.options import SafeMigrateOptions
from tests.helpers import seed_baseline

MB = 1024**2


@pytest.fixture(autouse=True)
def _isolated(settings, tmp_path):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"


def subscriptions(rows: int, shared_buffers: int = 128 * MB, max_wal_size: int = 1024 * MB) -> TableRewrite:
    """subscriptions at the baseline, as bench/explain_upgrade.py measured it (459 MB + 291 MB at 4M rows)."""
    return TableRewrite("subscriptions", rows, rows * 120, rows * 76, shared_buffers, max_wal_size)


def test_at_4m_rows_both_default_settings_are_named_with_the_values_that_fit():
    wal, memory = subscriptions(4_000_000).warnings()
    assert "the backfill of subscriptions (4,000,000 rows, 457.8 MB + indexes 289.9 MB)" in wal
    # 3.6x (table + indexes) of WAL; a checkpoint is asked for at max_wal_size / (1 + 0.9); 1 GB headroom
    assert "writes about 2.6 GB of WAL: with max_wal_size 1.0 GB checkpoints fall inside it" in wal
    assert "set max_wal_size to 6GB or more" in wal
    # the table and its indexes doubled: 457.8 + 579.8 MB, rounded up to 128 MB
    assert "take about 1.0 GB, more than shared_buffers (128.0 MB)" in memory
    assert "shared_buffers 1152MB or more" in memory


def test_settings_that_fit_give_no_warning_and_each_threshold_is_its_own():
    assert subscriptions(4_000_000, shared_buffers=1152 * MB, max_wal_size=6 * 1024 * MB).warnings() == []
    (only,) = subscriptions(4_000_000, shared_buffers=1152 * MB).warnings()
    assert "max_wal_size" in only and "shared_buffers" not in only
    (only,) = subscriptions(4_000_000, shared_buffers=1024 * MB, max_wal_size=6 * 1024 * MB).warnings()
    assert "shared_buffers 1152MB" in only
    # a later checkpoint target leaves less room: the same 6GB no longer fits at 0.99
    rewrite = subscriptions(4_000_000, shared_buffers=1152 * MB, max_wal_size=6 * 1024 * MB)
    late = TableRewrite(**{**rewrite.__dict__, "checkpoint_completion_target": 0.99})
    assert len(late.warnings()) == 1 and "set max_wal_size to 7GB" in late.warnings()[0]
    # 1M rows: 2.3 GB asked of max_wal_size, 259 MB of shared_buffers
    assert len(subscriptions(1_000_000).warnings()) == 2
    assert subscriptions(1_000_000, shared_buffers=384 * MB, max_wal_size=3 * 1024 * MB).warnings() == []
    assert len(subscriptions(1_000_000, shared_buffers=384 * MB, max_wal_size=2 * 1024 * MB).warnings()) == 1
    # A small table's backfill fits a default server (1GB, 128MB): 300k rows write about 212 MB of WAL
    # and 82 MB stay in the buffers (the fixed gigabyte of headroom used to ask 1.4 GB for any table).
    assert subscriptions(300_000).warnings() == [] and subscriptions(1_000).warnings() == []


def test_the_plan_names_the_tables_its_batched_backfills_walk(migrated_db):
    from migrations_ops.planning import build_plan

    plan = build_plan(migrated_db.alias, "billing", "0002")  # backwards over billing 0003 and later
    assert "subscriptions" in capacity.backfilled_tables(plan)
    forwards = build_plan(migrated_db.alias, "billing", "0007")
    assert capacity.backfilled_tables(forwards) == []  # at the head: nothing to walk


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_postgresql_reads_real_sizes_and_settings(baseline_db):
    seed_baseline(baseline_db)
    engine = get_engine(baseline_db.alias)
    rewrite = engine.rewrite_facts("subscriptions")
    assert rewrite.rows == 3  # never analyzed: counted, not estimated
    assert rewrite.table_bytes == baseline_db.scalar("SELECT pg_table_size('subscriptions')") > 0
    assert rewrite.index_bytes == baseline_db.scalar("SELECT pg_indexes_size('subscriptions')") > 0
    assert rewrite.shared_buffers == baseline_db.scalar("SELECT pg_size_bytes(current_setting('shared_buffers'))")
    assert rewrite.max_wal_size == baseline_db.scalar("SELECT pg_size_bytes(current_setting('max_wal_size'))")
    assert rewrite.checkpoint_completion_target == float(baseline_db.scalar("SHOW checkpoint_completion_target"))
    assert engine.rewrite_facts("no_such_table") is None  # created by the plan: empty when backfilled


def test_safe_migrate_warns_before_it_starts_and_records_the_warnings(baseline_db, settings, monkeypatch):
    seed_baseline(baseline_db)
    # A server too small for any table: real sizes and settings, thresholds raised past them.
    monkeypatch.setattr(capacity, "WAL_PER_BYTE_REWRITTEN", 10**9)
    monkeypatch.setattr(capacity, "INDEX_GROWTH", 10**9)
    lines: list[str] = []
    summary = safe_migrate(baseline_db.alias, SafeMigrateOptions(plan_only=True), report=lines.append)
    assert summary.status == "planned"
    (event,) = [e for e in audit.read_events(settings.MIGRATION_LOG) if e["event"] == "safe_migrate.plan"]
    if baseline_db.vendor == "sqlite":  # no shared_buffers, no WAL checkpoints to size
        assert summary.warnings == [] and event["warnings"] == []
        return
    warned = [w for w in summary.warnings if w.startswith("the backfill of subscriptions (3 rows")]
    assert len(warned) == 2 and "max_wal_size" in warned[0] and "shared_buffers" in warned[1]
    assert [line for line in lines if line.startswith("Warning: ")] == [f"Warning: {w}" for w in summary.warnings]
    assert summary.to_dict()["warnings"] == summary.warnings == event["warnings"]
