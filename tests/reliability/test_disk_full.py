"""The disk holding BACKUP_DIR fills up while a backup is written (a real, small tmpfs).

backup_db, and safe_migrate's pre-migrate backup, must end with exit 1 (or 2 when the preflight
sees the shortage first) and ONE `error:` line saying the disk is full and naming BACKUP_DIR; the
database is untouched, no partial backup is listed, nothing is left behind in BACKUP_DIR, and the
migration lock is free.

The preflight asks for twice the database's size free, and a dump is never larger than the
database, so a pre-migrate backup only runs out of space when something else fills the disk while
it is written: the test does that (another writer, as a log or a second backup would) the instant
the dump's temporary file appears, with safe_migrate paused (SIGSTOP) so the race is never lost.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from migrations_ops import backups
from migrations_ops.engines import get_engine
from migrations_ops.errors import ExitCode
from tests import dbs
from tests.dbs import manage_env, run_manage
from tests.helpers import fingerprint, seed_baseline
from tests.reliability.harness import Run, audit_events, lock_is_free

LEFT_FREE = 16 * 1024  # what the filler leaves: far less than the dump


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted at tmp_path/disk of the size asked for (unmounted afterwards)."""
    mounted: list[Path] = []

    def mount(size_bytes: int) -> Path:
        point = tmp_path / f"disk{len(mounted)}"
        point.mkdir()
        if os.geteuid() != 0:
            pytest.skip("mounting a small tmpfs for BACKUP_DIR needs root")
        size_kb = max(64, size_bytes // 1024)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_kb}k,mode=0700", "tmpfs", str(point)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(disk: Path, leave: int = LEFT_FREE) -> None:
    """Another writer takes all but ``leave`` bytes of the disk (allocated at once, no data written)."""
    free = shutil.disk_usage(disk).free
    fd = os.open(disk / f"filler-{len(list(disk.glob('filler-*')))}", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, max(0, free - leave))
    finally:
        os.close(fd)


def leftovers(directory: Path) -> list[str]:
    """Everything in BACKUP_DIR (a failed backup must leave nothing, temporary or not)."""
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def assert_one_disk_full_line(err: str, directory: Path) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert "no space left on device" in lines[0].lower(), err
    assert f"BACKUP_DIR {directory}" in lines[0], err


BALLAST_MB = 3  # incompressible rows: the dump is about this big, more than the 2 MB disk


def add_ballast(db, megabytes: int) -> None:
    """Rows of random bytes (no compression shrinks them), so the dump is ``megabytes`` large."""
    blob = "bytea" if db.vendor == "postgresql" else "blob"
    db.query(f"CREATE TABLE ballast (id integer PRIMARY KEY, data {blob} NOT NULL)")
    for i in range(megabytes * 4):
        db.query("INSERT INTO ballast (id, data) VALUES (%s, %s)", [i, os.urandom(256 * 1024)])


@pytest.fixture(params=["postgresql", "sqlite"])
def seeded(request):
    """A seeded baseline of each engine (the upgrade is the plan) with BALLAST_MB of ballast."""
    db = dbs.scratch(request, request.param, "baseline")
    seed_baseline(db)
    add_ballast(db, BALLAST_MB)
    return db


def test_backup_db_on_a_full_disk(seeded, small_disk, tmp_path, settings):
    disk = small_disk(2 * 1024 * 1024)
    directory = disk / "backups"
    settings.BACKUP_DIR = directory
    settings.MIGRATION_LOG = tmp_path / "log" / "migration.log"
    before = fingerprint(seeded)
    env = manage_env(BACKUP_DIR=str(directory), MIGRATION_LOG=str(settings.MIGRATION_LOG))
    done = run_manage(seeded.url, "backup_db", "--name", "full", env=env, timeout=60)
    assert done.returncode == ExitCode.FAILED, (done.returncode, done.stderr)
    assert_one_disk_full_line(done.stderr, directory)
    assert fingerprint(seeded) == before
    assert backups.list_backups() == []
    assert leftovers(directory) == []
    end = [e for e in audit_events(settings.MIGRATION_LOG) if e["event"] == "backup.end"]
    assert end and end[-1]["outcome"] == "failed" and "no space left on device" in end[-1]["error"].lower()
    assert lock_is_free(seeded)


def test_safe_migrate_refused_by_the_free_space_preflight(seeded, small_disk, tmp_path, settings):
    """Less free than twice the database: exit 2 before any backup, nothing written."""
    disk = small_disk(2 * 1024 * 1024)
    before = fingerprint(seeded)
    run = Run(seeded, tmp_path, settings, backup_dir=disk / "backups")
    code, err, _took = run.finish(timeout=60)
    assert code == ExitCode.BAD_INPUT, (code, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    assert f"not enough free space in {disk / 'backups'}" in lines[0], err
    assert fingerprint(seeded) == before
    assert backups.list_backups() == []
    assert leftovers(disk / "backups") == []
    assert not [e for e in audit_events(run.log) if e["event"] == "backup.start"]
    assert lock_is_free(seeded)


def test_safe_migrate_when_the_disk_fills_during_the_backup(seeded, small_disk, tmp_path, settings):
    """The preflight passes (room for twice the database); another writer fills the disk the moment
    the dump's temporary file appears: exit 1, the disk-full line, the database as before."""
    size = get_engine(seeded.alias).database_size()
    disk = small_disk(2 * size + 4 * 1024 * 1024)
    directory = disk / "backups"
    before = fingerprint(seeded)
    seeded.connection.close()
    run = Run(seeded, tmp_path, settings, backup_dir=directory)
    filled = threading.Event()

    def filler() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and run.process.poll() is None:
            if directory.is_dir() and any(p.name.endswith(".tmp") for p in os.scandir(directory)):
                os.kill(run.process.pid, signal.SIGSTOP)  # paused: the race with the dump is never lost
                try:
                    fill(disk)
                finally:
                    os.kill(run.process.pid, signal.SIGCONT)
                filled.set()
                return

    thread = threading.Thread(target=filler, daemon=True)
    thread.start()
    code, err, _took = run.finish(timeout=60)
    thread.join(timeout=5)
    assert filled.is_set(), "the dump's temporary file never appeared"
    assert code == ExitCode.FAILED, (code, err)
    assert_one_disk_full_line(err, directory)
    assert fingerprint(seeded) == before
    assert backups.list_backups() == []
    assert leftovers(directory) == []
    events = [e["event"] for e in audit_events(run.log)]
    assert "backup.start" in events and "safe_migrate.migration" not in events
    assert lock_is_free(seeded)
