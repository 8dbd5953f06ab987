"""The checkpoint pace of an online backfill (online/governor.py CheckpointPace,
MIGRATION_ONLINE_CHECKPOINT_PACING): its arithmetic, the server's figures it starts from, and a real run
on a cluster of its own whose checkpoints are sized small, where the walks must slow to that size.
"""

from __future__ import annotations

import json
import threading
import time

import psycopg2
import pytest

from migrations_ops.engines import get_engine
from migrations_ops.errors import ExitCode
from migrations_ops.online.governor import MB, CheckpointPace
from tests.dbs import manage_env, run_manage, start_manage
from tests.helpers import applied_migrations, run_online
from tests.pgbackrest_cluster import ArchivingCluster, missing_tools

DISTANCE = 100 * MB


def test_no_rest_until_the_walks_wrote_half_the_distance():
    pace = CheckpointPace(distance=DISTANCE, timeout_s=100.0, started_at=1_000)
    # 1 MB/s is the pace; a batch of 2 MB in 0.5 s would rest 1.5 s, but not before 50 MB were written.
    assert pace.rest_s(1_000 + 49 * MB, 2 * MB, 0.5) == 0.0
    assert not pace.engaged
    assert pace.rest_s(1_000 + 50 * MB, 2 * MB, 0.5) == pytest.approx(1.5)
    assert pace.engaged


def test_once_engaged_each_batch_rests_to_the_pace_whatever_the_position():
    pace = CheckpointPace(distance=DISTANCE, timeout_s=100.0, started_at=0, engaged=True)
    assert pace.rest_s(0, 3 * MB, 1.0) == pytest.approx(2.0)
    assert pace.rest_s(0, MB // 2, 1.0) == 0.0  # a batch slower than the pace does not rest
    assert "1.0 MB/s" in pace.detail() and "raise max_wal_size" in pace.detail()


def test_the_server_says_how_far_apart_its_checkpoints_are(migrated_db):
    engine = get_engine(migrated_db.alias)
    if migrated_db.vendor == "sqlite":
        assert engine.checkpoint_spacing() is None
        return
    size, target, timeout = migrated_db.query(
        "SELECT (SELECT setting::bigint * 1024 * 1024 FROM pg_settings WHERE name = 'max_wal_size'), "
        "(SELECT setting::float8 FROM pg_settings WHERE name = 'checkpoint_completion_target'), "
        "(SELECT setting::float8 FROM pg_settings WHERE name = 'checkpoint_timeout')"
    )[0]
    distance, seconds = engine.checkpoint_spacing()
    assert distance == int(size / (1 + target))
    assert seconds == timeout


@pytest.mark.parametrize(
    ("setting", "value", "says"),
    [
        ("MIGRATION_ONLINE_CHECKPOINT_PACING", "yes", "must be True or False"),
        ("MIGRATION_ONLINE_MAX_LOAD_RISE", 0.5, "must be over 1"),
        ("MIGRATION_ONLINE_MAX_WAL_RATE", -1, "cannot be negative"),
    ],
)
def test_a_bad_back_off_setting_is_refused_before_anything_runs(pg_baseline_db, settings, setting, value, says):
    """Refused before the backup and before any migration, not by the first walk's governor."""
    before = applied_migrations(pg_baseline_db)
    setattr(settings, setting, value)
    summary = run_online(pg_baseline_db)
    assert summary.exit_code == ExitCode.BAD_INPUT, summary.error
    assert says in summary.error and "\n" not in summary.error
    assert summary.backup is None
    assert applied_migrations(pg_baseline_db) == before


# ------------------------------------------------------------------ a real run, small checkpoints
# max_wal_size 32MB (the least with 16 MB segments) and checkpoint_timeout 30s: the server starts a
# checkpoint every 16.8 MB (32 MB / 1.9), so the pace is 0.56 MB/s, reached after 8.4 MB of walking.
SMALL_CHECKPOINTS = "max_wal_size = 32MB\ncheckpoint_timeout = 30s\narchive_mode = off\n"
ROWS = "8000"


class WalSampler(threading.Thread):
    """The cluster's WAL position and the run's progress every 50 ms, from outside the run."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url, self.samples, self.halt = url, [], threading.Event()

    def run(self) -> None:
        connection = psycopg2.connect(self.url.replace("postgres://", "postgresql://", 1))
        connection.autocommit = True
        try:
            with connection.cursor() as cursor:
                while not self.halt.is_set():
                    # The run creates its table: until then there is no progress to read.
                    cursor.execute("SELECT to_regclass('migrations_ops_online_run') IS NOT NULL")
                    progress = "(SELECT progress::text FROM migrations_ops_online_run ORDER BY id DESC LIMIT 1)"
                    cursor.execute(
                        "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::bigint, "
                        + (progress if cursor.fetchone()[0] else "NULL")
                    )
                    position, progress = cursor.fetchone()
                    self.samples.append((time.monotonic(), position, json.loads(progress) if progress else {}))
                    time.sleep(0.05)
        finally:
            connection.close()


@pytest.mark.slow
def test_the_walks_slow_to_what_small_checkpoints_allow(settings, tmp_path):
    why = missing_tools()
    if why:
        if settings.REQUIRE_POSTGRES:
            pytest.fail(why)
        pytest.skip(why)
    with ArchivingCluster(extra_conf=SMALL_CHECKPOINTS) as cluster:
        cluster.create_database("app")
        url = cluster.url.rsplit("/", 1)[0] + "/app"
        env = manage_env(BACKUP_DIR=str(tmp_path / "backups"), MIGRATION_LOG=str(tmp_path / "migration.log"))
        for argv in (
            ("migrate", "accounts", "0001", "--noinput", "-v0"),
            ("migrate", "billing", "0001", "--noinput", "-v0"),
            ("seed_demo_data", "--users", ROWS, "--subscriptions", ROWS),
        ):
            done = run_manage(url, *argv, env=env)
            assert done.returncode == 0, done.stderr
        sampler = WalSampler(url)
        sampler.start()
        paced = {**env, "MIGRATION_ONLINE_CHECKPOINT_PACING": "true"}  # off by default
        run = start_manage(url, "safe_migrate", "--online", "--noinput", "--json", env=paced)
        out, err = run.communicate(timeout=300)
        sampler.halt.set()
        sampler.join()
    assert run.returncode == 0, err
    summary = json.loads(out)
    assert summary["status"] == "online_applied"
    paced_s = summary["online"]["pauses_s"].get("checkpoint", 0)
    assert paced_s > 1.0, summary["online"]["pauses_s"]
    # Measured from outside: over the stretch where progress showed the pace, WAL grew no faster than
    # the pace (0.56 MB/s; the walk's own speed is several MB/s here), and did not stall.
    pacing = [sample for sample in sampler.samples if sample[2].get("waiting_for") == "checkpoint"]
    assert len(pacing) > 10, [s[2].get("phase") for s in sampler.samples]
    # From the first sample showing the pace to the last at which a batch had moved the walk on (the last
    # progress written stays in place while the run finishes its other steps).
    moved = [i for i in range(1, len(pacing)) if pacing[i][2].get("pages_done") != pacing[i - 1][2].get("pages_done")]
    (t0, p0, _), (t1, p1, _) = pacing[0], pacing[moved[-1]]
    rate = (p1 - p0) / MB / (t1 - t0)
    assert 0.1 < rate < 0.56 * 1.2, rate
