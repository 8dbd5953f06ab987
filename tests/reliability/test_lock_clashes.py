"""Two operations on one database at once, as real ``manage.py`` processes: one proceeds, the other
exits 3 with one line naming who holds the migration lock, and changes nothing.

The in-process versions (a lock held by the test itself) are in test_safe_migrate.py and
test_restore.py; here both sides are real commands, on PostgreSQL and SQLite.
"""

from __future__ import annotations

import pytest

from migrations_ops import backups
from migrations_ops.errors import ExitCode
from tests.helpers import add_customer, fingerprint, with_apps
from tests.reliability.harness import Run, backups_all_verify, fully_migrated, lock_is_free

# ma_slow.0001 is pending: it creates ma_ticks, writes one row, then sleeps (holding the lock).
SLOW = {"TEST_MIGRATION_APPS": "ma_slow", "MA_SLOW_SECONDS": "2"}
QUICK = {"TEST_MIGRATION_APPS": "ma_slow", "MA_SLOW_SECONDS": "0"}


def _refused_by_the_lock(run: Run, holder: Run) -> None:
    code, err, _ = run.finish()
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == ExitCode.LOCKED, err
    assert len(lines) == 1 and "holds the migration lock" in lines[0] and f"pid {holder.process.pid}" in lines[0], err
    assert "Traceback" not in err


def test_two_safe_migrate_started_at_once(migrated_db, tmp_path, settings):
    """Started together: whichever takes the lock migrates, the other exits 3 at once, having planned,
    backed up and changed nothing."""
    db = migrated_db
    with_apps(settings, "ma_slow")  # the test process sees the same plan
    first = Run(db, tmp_path, settings, env=SLOW)
    second = Run(db, tmp_path, settings, env=SLOW)
    codes = {first: first.finish(timeout=120), second: second.finish(timeout=120)}
    winner, loser = sorted(codes, key=lambda run: codes[run][0])
    assert codes[winner][0] == ExitCode.OK, codes[winner][1]
    lines = [line for line in codes[loser][1].splitlines() if line.strip()]
    assert codes[loser][0] == ExitCode.LOCKED, codes[loser][1]
    assert len(lines) == 1 and f"pid {winner.process.pid}" in lines[0], lines
    assert {e["event"] for e in loser.events()} == {"safe_migrate.start", "safe_migrate.end"}
    assert fully_migrated(db) and db.scalar("SELECT count(*) FROM ma_ticks") == 1
    assert [m.reason for m in backups.list_backups()] == ["pre-migrate"]  # the winner's only
    assert backups_all_verify() == []
    assert lock_is_free(db)


@pytest.mark.parametrize(
    ("engine", "holder"),
    [("postgresql", "safe_migrate"), ("sqlite", "restore_db")],  # each engine, each order (the suite's time)
    indirect=["engine"],
)
def test_safe_migrate_against_restore_db(migrated_db, tmp_path, settings, holder):
    """The holder is stopped (SIGSTOP) inside its lock, as its backup starts (safe_migrate's pre-migrate
    backup, restore_db's pre-restore safety backup). The other command exits 3, the database exactly
    as it was and no backup of its own; the holder then finishes as if it had been alone."""
    db = migrated_db
    settings.BACKUP_DIR = tmp_path / "backups"
    backups.create_backup(using=db.alias, name="snap")
    add_customer(db)  # written after the backup: a restore would remove it
    with_apps(settings, "ma_slow")
    if holder == "safe_migrate":
        held = Run(db, tmp_path, settings, env=QUICK)
        held.stop_at_event("backup.start")  # the pre-migrate backup, lock held, nothing changed yet
    else:
        held = Run(db, tmp_path, settings, "snap", command="restore_db", env=QUICK)
        held.stop_at_event("backup.start")  # the pre-restore safety backup, lock held
    try:
        before = fingerprint(db)
        listed = sorted(m.name for m in backups.list_backups())
        if holder == "safe_migrate":
            other = Run(db, tmp_path, settings, "snap", command="restore_db", env=QUICK)
        else:
            other = Run(db, tmp_path, settings, env=QUICK)
        _refused_by_the_lock(other, held)
        assert fingerprint(db) == before
        assert sorted(m.name for m in backups.list_backups()) == listed
    finally:
        held.resume()
    code, err, _ = held.finish(timeout=120)
    assert code == ExitCode.OK, err
    customers = db.scalar("SELECT count(*) FROM users WHERE email = 'c@example.com'")
    if holder == "safe_migrate":  # migrated, and no restore happened
        assert fully_migrated(db) and customers == 1
    else:  # restored, and no migration happened
        assert not fully_migrated(db) and customers == 0
    assert backups_all_verify() == []
    assert lock_is_free(db)
