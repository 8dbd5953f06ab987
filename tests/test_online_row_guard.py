"""The row-count guard of ``safe_migrate --online`` on real PostgreSQL. The run counts no table (reading
every row of the database however little the plan touches); it counts its own row changes in each of
its transactions, with the work, and compares each table's storage (relfilenode) before and after."""

from __future__ import annotations

import pytest

from migrations_ops.audit import read_events
from migrations_ops.errors import ExitCode
from tests import dbs
from tests.helpers import run_online, with_apps

pytestmark = pytest.mark.usefixtures("online_settings")

ROWS = 3000


def gadgets(request, settings, app: str):
    db = dbs.scratch(request, "postgresql", "head")
    with_apps(settings, "ma_expand", app)
    db.migrate("ma_expand:0001_initial")
    db.query(
        "INSERT INTO ma_gadgets (label, qty, note, legacy, code) SELECT 'g' || i, i, 'n', 'x', 'c' "
        "FROM generate_series(1, %s) i",
        [ROWS],
    )
    db.query("ANALYZE ma_gadgets")  # the catalog's estimate, as autovacuum would leave it: exact here
    return db


def test_an_online_run_counts_no_table_yet_its_own_deletes_are_a_loss(request, settings):
    db = gadgets(request, settings, "ma_online_loss")
    summary = run_online(db, app_label="ma_online_loss")
    assert summary.exit_code == ExitCode.FAILED and summary.status == "rolled_back", summary.error
    assert "row_count_guard" in summary.error and "ma_gadgets: ~3000 -> ~1500" in summary.error, summary.error
    (preflight,) = [e for e in read_events(settings.MIGRATION_LOG) if e["event"] == "safe_migrate.preflight"]
    assert preflight["estimated"] is True and preflight["tables"]["ma_gadgets"] == ROWS, preflight

    db.query(
        "INSERT INTO ma_gadgets (label, qty, note, legacy, code) SELECT 'h' || i, i, 'n', 'x', 'c' "
        "FROM generate_series(1, 2) i"
    )  # an even qty again: something for the retry to delete
    allowed = run_online(db, app_label="ma_online_loss", allow_row_loss=frozenset({"ma_gadgets"}))
    assert allowed.exit_code == 0 and allowed.status == "online_applied", allowed.error
    assert db.scalar("SELECT count(*) FROM ma_gadgets WHERE qty %% 2 = 0") == 0


def test_a_truncate_the_analysis_let_through_is_caught_by_the_tables_storage(request, settings):
    """A BoundedRunPython that empties a table: no deleted row is counted for a TRUNCATE, and nobody
    counted the rows before, so the replaced relfilenode is the loss."""
    db = gadgets(request, settings, "ma_online_truncate")
    summary = run_online(db, app_label="ma_online_truncate")
    assert summary.exit_code == ExitCode.FAILED and summary.status == "rolled_back", summary.error
    assert "ma_gadgets: ~3000 -> storage replaced, rows before not counted" in summary.error, summary.error
