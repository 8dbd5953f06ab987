"""Operating a running online run from a second process, on real PostgreSQL: its progress in
migration_status, pause and continue, a rate limit, and the back-off signals (sessions queued on
locks, a transaction holding back vacuum, the WAL rate, a burst of load read either way), each shown to
trigger.

The run is `manage.py safe_migrate --online` in a subprocess over the seeded baseline (2,000 users and
2,000 subscriptions, backfilled in batches of one page); this process plays the operator and the
application.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time

import psycopg2
import pytest

from migrations_ops.api import online_control
from migrations_ops.audit import read_events
from migrations_ops.engines import get_engine
from migrations_ops.errors import BadInput, ExitCode
from migrations_ops.online import control
from migrations_ops.online.governor import Governor, Limits
from tests.dbs import manage_env, run_manage, start_manage
from tests.reliability.harness import wait_for

pytestmark = [pytest.mark.usefixtures("online_settings"), pytest.mark.slow]


def start_run(db, tmp_path, **extra: str) -> subprocess.Popen:
    env = manage_env(
        BACKUP_DIR=str(tmp_path / "backups"),
        MIGRATION_LOG=str(tmp_path / "subprocess.log"),
        **{"MIGRATION_ONLINE_BATCH_SIZE": "40", **extra},
    )
    return start_manage(db.url, "safe_migrate", "--online", "--noinput", "--json", env=env)


def progress_of(db, run: subprocess.Popen) -> dict:
    assert run.poll() is None, run.communicate()
    found = control.status(db.alias)
    return found["progress"] if found else {}


def finished(run: subprocess.Popen) -> dict:
    out, err = run.communicate(timeout=180)
    assert run.returncode == 0, err
    return json.loads(out)


def pg(db):
    connection = psycopg2.connect(db.url.replace("postgres://", "postgresql://", 1))
    connection.autocommit = True
    return connection


def test_pause_holds_nothing_then_continue_finishes_the_run(pg_seeded_db, tmp_path, settings):
    db = pg_seeded_db
    run = start_run(db, tmp_path, MIGRATION_ONLINE_BATCH_PAUSE="50ms")
    wait_for(lambda: progress_of(db, run).get("pages_done", 0) > 0)
    online_control(db.alias, "pause", reason="traffic peak")
    wait_for(lambda: progress_of(db, run).get("phase") == "paused")
    done = progress_of(db, run)["pages_done"]
    time.sleep(1.0)
    assert progress_of(db, run)["pages_done"] == done  # no batch while paused
    # Paused between batches: no transaction open, no lock on the tables it backfills ...
    watcher = pg(db)
    with watcher.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND state LIKE 'idle in transaction%%'"
        )
        assert cursor.fetchone()[0] == 0
        cursor.execute(
            "SELECT count(*) FROM pg_locks WHERE relation IN ('users'::regclass, 'subscriptions'::regclass) "
            "AND pid <> pg_backend_pid()"
        )
        assert cursor.fetchone()[0] == 0
    watcher.close()
    # ... but still the migration's lock: a second run is refused with exit 3.
    second = run_manage(db.url, "safe_migrate", "--noinput", env=manage_env(BACKUP_DIR=str(tmp_path / "b2")))
    assert second.returncode == ExitCode.LOCKED, second.stderr
    shown = run_manage(db.url, "migration_status", env=manage_env())
    assert "now: paused: paused by" in shown.stdout and "traffic peak" in shown.stdout, shown.stdout
    as_json = json.loads(run_manage(db.url, "migration_status", "--json", env=manage_env()).stdout)
    assert as_json["online_run"]["progress"]["phase"] == "paused"
    assert as_json["online_run"]["control"]["paused"] is True

    online_control(db.alias, "continue")
    summary = finished(run)
    assert summary["status"] == "online_applied"
    assert summary["online"]["pauses_s"]["operator"] >= 1.0
    recorded = [event for event in read_events(settings.MIGRATION_LOG) if event["event"] == "online_control"]
    assert [event["action"] for event in recorded] == ["pause", "continue"]
    assert all("@" in event["by"] for event in recorded)


def test_a_rate_limit_slows_the_backfill_and_clearing_it_lets_it_go(pg_seeded_db, tmp_path):
    db = pg_seeded_db
    run = start_run(db, tmp_path)
    wait_for(lambda: progress_of(db, run).get("pages_done", 0) > 0)
    online_control(db.alias, "limit", rows_per_second=300)
    time.sleep(0.5)  # the batch under way when the limit came ends
    start = progress_of(db, run)
    time.sleep(2.0)
    end = progress_of(db, run)
    if end.get("table") == start.get("table"):  # the same walk: its rows changed per second
        rate = (end["rows_changed"] - start["rows_changed"]) / 2.0
        assert rate <= 300 * 1.5, rate
    assert progress_of(db, run)["control"]["rows_per_second"] == 300
    online_control(db.alias, "limit", clear=True)
    assert finished(run)["status"] == "online_applied"


def test_a_pause_does_not_wait_for_the_rest_a_rate_limit_asked(pg_seeded_db, tmp_path):
    """At 0.2 rows/s a batch over users (one page, a few rows to change) is followed by 5-20 s of rest;
    the pause, and a cleared limit, take effect within it (the rest is slept in slices that read the
    control; slept at once, a pause waited 16 s behind a limit of 100 rows/s at 100k rows)."""
    db = pg_seeded_db
    run = start_run(db, tmp_path, MIGRATION_ONLINE_BATCH_PAUSE="50ms")
    wait_for(lambda: progress_of(db, run).get("pages_done", 0) > 0)
    online_control(db.alias, "limit", rows_per_second=0.2)
    time.sleep(1.0)  # a batch has run under the limit: the run rests for seconds now
    online_control(db.alias, "pause")
    wait_for(lambda: progress_of(db, run).get("phase") == "paused", timeout=4)
    online_control(db.alias, "limit", clear=True)
    online_control(db.alias, "continue")
    assert finished(run)["status"] == "online_applied"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param({"action": "limit"}, "limit needs", id="limit-without-a-limit"),
        pytest.param({"action": "limit", "rows_per_second": 0}, "more than 0", id="zero-rate"),
        pytest.param({"action": "limit", "batch_pause": "soon"}, "--batch-pause", id="bad-duration"),
        pytest.param({"action": "pause", "rows_per_second": 5}, "go with the action limit", id="limit-on-pause"),
        pytest.param({"action": "stop"}, "unknown action", id="unknown-action"),
    ],
)
def test_bad_control_options_are_one_line_and_change_nothing(pg_seeded_db, options, message):
    with pytest.raises(BadInput, match=message):
        online_control(pg_seeded_db.alias, **options)


def test_control_without_a_running_run_is_refused(pg_seeded_db):
    with pytest.raises(BadInput, match="no online run is running"):
        online_control(pg_seeded_db.alias, "pause")
    shown = run_manage(pg_seeded_db.url, "online_control", "pause", env=manage_env())
    assert shown.returncode == ExitCode.BAD_INPUT and shown.stderr.count("\n") == 1


# ---------------------------------------------------------------- back-off, each signal


class RowHolder:
    """A transaction holding a row lock of users (the table walked first), and a session queued behind it."""

    def __init__(self, db) -> None:
        self.holder, self.waiter = pg(db), pg(db)
        self.holder.autocommit = False
        with self.holder.cursor() as cursor:
            cursor.execute("SELECT id FROM users ORDER BY date_joined DESC LIMIT 1 FOR UPDATE")
            self.row = cursor.fetchone()[0]
        self.thread = threading.Thread(target=self._queue, daemon=True)
        self.thread.start()

    def _queue(self) -> None:
        with self.waiter.cursor() as cursor:
            cursor.execute("UPDATE users SET full_name = full_name WHERE id = %s", [self.row])

    def release(self) -> None:
        self.holder.rollback()
        self.thread.join(timeout=30)
        self.holder.close()
        self.waiter.close()


class OldSnapshot:
    """A repeatable-read transaction that keeps its snapshot: it holds back vacuum."""

    def __init__(self, db) -> None:
        self.connection = pg(db)
        self.connection.autocommit = False
        self.connection.set_session(isolation_level="REPEATABLE READ")
        with self.connection.cursor() as cursor:  # a snapshot, and no lock on a table the run changes
            cursor.execute("SELECT 1")

    def release(self) -> None:
        self.connection.rollback()
        self.connection.close()


class Burst:
    """Application load rising at once: SESSIONS sessions each running statements back to back."""

    SESSIONS = 6

    def __init__(self, db) -> None:
        self.halt = threading.Event()
        self.connections = [pg(db) for _ in range(self.SESSIONS)]
        self.threads = [threading.Thread(target=self._work, args=(c,), daemon=True) for c in self.connections]
        for thread in self.threads:
            thread.start()

    def _work(self, connection) -> None:
        with connection.cursor() as cursor:
            while not self.halt.is_set():
                cursor.execute("SELECT pg_sleep(0.05)")

    def release(self) -> None:
        self.halt.set()
        for thread in self.threads:
            thread.join(timeout=30)
        for connection in self.connections:
            connection.close()


class WriteStorm:
    """Application load rising without overlapping: one session committing tiny writing transactions
    back to back (each takes a transaction id), thousands a second, never two statements at once."""

    def __init__(self, db) -> None:
        self.halt = threading.Event()
        self.connection = pg(db)
        self.thread = threading.Thread(target=self._work, daemon=True)
        self.thread.start()

    def _work(self) -> None:
        with self.connection.cursor() as cursor:
            while not self.halt.is_set():
                cursor.execute("SELECT pg_current_xact_id()")

    def release(self) -> None:
        self.halt.set()
        self.thread.join(timeout=30)
        self.connection.close()


def test_the_writes_reading_sees_a_burst_that_never_overlaps(pg_seeded_db):
    """The governor's second reading of load, on the real server: writing transactions per second
    against their usual rate. (Server-wide, as in production: another test worker's writes are part of
    the usual rate here, and the storm's thousands a second stand far above them.)"""
    db = pg_seeded_db
    governor = Governor(get_engine(db.alias), db.alias, 0, lambda *args, **fields: None, Limits.from_settings())

    def burst_seen() -> bool:
        governor._load_burst(3.0)
        return (governor.writes.rise(time.monotonic()) or 0) > 3

    deadline = time.monotonic() + 2.5  # the usual rate: learned over the first 2 s
    while time.monotonic() < deadline:
        assert not burst_seen(), (governor.writes.now, governor.writes.usual)
        time.sleep(0.1)
    storm = WriteStorm(db)
    try:
        started = time.monotonic()
        wait_for(burst_seen, timeout=10, interval=0.1, what="the writes reading to see the storm")
        assert time.monotonic() - started < 3.0  # half a second's window, a tenth's average, the polls
        assert "writing transactions/s against a usual" in governor._load_burst(3.0)
    finally:
        storm.release()


@pytest.mark.parametrize(
    ("stress", "shown_as"),
    [
        # Six sessions busy at once against about none.
        pytest.param(Burst, "statements at once against a usual", id="statements-at-once"),
        # Thousands of writes a second that never overlap (which reading is the larger may vary: the
        # governor-level test above shows the writes reading alone sees it).
        pytest.param(WriteStorm, None, id="writing-transactions"),
    ],
)
def test_a_burst_of_application_load_makes_the_run_back_off_until_it_passes(pg_seeded_db, tmp_path, stress, shown_as):
    """The usual level is learned while the run walks (2 s before any verdict); a burst makes it back
    off, no batch meanwhile; when the burst stops, the run goes on."""
    db = pg_seeded_db
    # One page per batch, 100 ms apart: the walk of users lasts seconds, past the 2 s of learning.
    run = start_run(
        db,
        tmp_path,
        MIGRATION_ONLINE_BATCH_SIZE="10",
        MIGRATION_ONLINE_BATCH_TARGET="1ms",
        MIGRATION_ONLINE_BATCH_PAUSE="100ms",
        MIGRATION_ONLINE_MAX_LOAD_RISE="3",  # the default (off in the suite: tests/settings.py)
    )
    wait_for(lambda: progress_of(db, run).get("pages_done", 0) > 0)
    time.sleep(2.5)  # the usual level: learned over the first 2 s of the run
    pressure = stress(db)
    try:
        wait_for(lambda: progress_of(db, run).get("waiting_for") == "load", timeout=10)
        shown = progress_of(db, run)
        assert shown["phase"] == "backing off", shown
        assert shown_as is None or shown_as in shown["detail"], shown
        done = shown["pages_done"]
        time.sleep(1.0)
        assert progress_of(db, run)["pages_done"] == done  # no batch while the burst lasts
    finally:
        pressure.release()
    online_control(db.alias, "limit", batch_pause="1ms")  # the rest of the walks, page by page, quickly
    summary = finished(run)
    assert summary["status"] == "online_applied"
    assert summary["online"]["pauses_s"].get("load", 0) > 1.0, summary["online"]["pauses_s"]


@pytest.mark.parametrize(
    ("cause", "setting", "value", "stress"),
    [
        pytest.param("lock_waiters", "MIGRATION_ONLINE_MAX_LOCK_WAITERS", "1", RowHolder, id="lock-waiters"),
        pytest.param(
            "long_transaction", "MIGRATION_ONLINE_MAX_TRANSACTION_AGE", "1s", OldSnapshot, id="long-transaction"
        ),
        pytest.param("wal_rate", "MIGRATION_ONLINE_MAX_WAL_RATE", "0.01", None, id="wal-rate"),
    ],
)
def test_each_stress_signal_makes_the_run_back_off_until_it_passes(
    pg_seeded_db, tmp_path, cause, setting, value, stress
):
    db = pg_seeded_db
    # Batches 100 ms apart: the walk of users lasts seconds, so the stress meets it mid-walk (a snapshot held
    # past it would also hold up the CREATE INDEX CONCURRENTLY after it, which waits for old snapshots).
    run = start_run(db, tmp_path, MIGRATION_ONLINE_BATCH_PAUSE="100ms", **{setting: value})
    wait_for(lambda: progress_of(db, run).get("pages_done", 0) > 0)
    if stress is not None:
        pressure = stress(db)
        wait_for(lambda: progress_of(db, run).get("waiting_for") == cause)
        assert progress_of(db, run)["phase"] == "backing off"
        time.sleep(0.5)
        pressure.release()
    summary = finished(run)
    assert summary["status"] == "online_applied"
    assert summary["online"]["pauses_s"].get(cause, 0) > 0, summary["online"]["pauses_s"]
