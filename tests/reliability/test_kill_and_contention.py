"""SIGKILL at random points, and lock contention with application transactions."""

from __future__ import annotations

import random
import signal
import time

import pytest

from migrations_ops import audit, backups
from migrations_ops.errors import ExitCode
from tests.helpers import fingerprint, run_safe_migrate, seed_baseline
from tests.reliability.harness import Run, backups_all_verify, fully_migrated, lock_is_free, pg

SEED = 20240611
KILLS = 5


@pytest.mark.parametrize("engine", ["postgresql", "sqlite"], indirect=True)
def test_sigkill_at_random_points_then_the_next_run_succeeds(baseline_db, tmp_path, settings):
    """Killed without warning at a seeded random moment (backup, a migration, validation, pruning):
    the server rolls back, the lock dies with the process, a half-written backup is never listed."""
    seed_baseline(baseline_db)
    before = fingerprint(baseline_db)
    rng = random.Random(SEED)
    for _ in range(KILLS):
        attempt = Run(baseline_db, tmp_path, settings)
        time.sleep(rng.uniform(1.0, 4.0))  # process start-up is ~1 s; the upgrade ~3 s
        attempt.process.send_signal(signal.SIGKILL)
        attempt.finish(timeout=30)
        if fully_migrated(baseline_db):
            break  # the kill came after COMMIT: the post-state, whole
        assert fingerprint(baseline_db) == before  # else the pre-state, whole
        assert lock_is_free(baseline_db)
        assert backups_all_verify() == []
        assert not list(backups.backup_dir().glob("*.json.tmp"))
    final = Run(baseline_db, tmp_path, settings)
    code, err, _ = final.finish(timeout=120)
    assert code == ExitCode.OK, err
    assert fully_migrated(baseline_db)
    assert backups_all_verify() == []


@pytest.mark.parametrize(
    "application",
    [
        "SELECT id FROM subscriptions ORDER BY id LIMIT 1 FOR UPDATE",  # a held row lock
        "LOCK TABLE subscriptions IN SHARE MODE",  # a held table lock
        "UPDATE subscriptions SET plan = plan WHERE id = (SELECT min(id) FROM subscriptions)",  # idle in transaction
    ],
    ids=["row_lock", "table_lock", "idle_in_transaction"],
)
@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_lock_contention_fails_within_the_timeout_and_its_retries(baseline_db, settings, tmp_path, application):
    settings.BACKUP_DIR = tmp_path / "backups"
    settings.MIGRATION_LOG = tmp_path / "log"
    settings.MIGRATION_LOCK_TIMEOUT = "300ms"
    seed_baseline(baseline_db)
    before = fingerprint(baseline_db)
    app = pg(baseline_db)
    try:
        with app.cursor() as cursor:
            cursor.execute(application)
        started = time.monotonic()
        summary = run_safe_migrate(baseline_db)
        took = time.monotonic() - started
    finally:
        app.rollback()
        app.close()
    assert summary.exit_code == ExitCode.FAILED, summary.error
    assert "lock timeout" in summary.error
    assert took < 20  # 4 tries of 0.3 s + 3.5 s of backoff + backup and preflight
    assert len([e for e in audit.read_events() if e["event"] == "safe_migrate.lock_timeout_retry"]) == 3
    assert fingerprint(baseline_db) == before
