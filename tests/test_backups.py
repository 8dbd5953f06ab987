"""backup_db / list_backups / verify_backup / prune_backups on both engines (real PostgreSQL, real tools)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest

from migrations_ops import audit, backups
from migrations_ops.engines import get_engine
from migrations_ops.errors import BadInput
from tests.dbs import latest_migration
from tests.helpers import add_users, corrupt, manage_in_env

ROOT = Path(__file__).resolve().parent.parent


def listed_names() -> list[str]:
    return [m.name for m in backups.list_backups()]


# --- writing and the manifest ---
def test_backup_writes_file_and_complete_manifest(migrated_db, backup_env):
    add_users(migrated_db, 2)
    manifest = backups.create_backup(using=migrated_db.alias, name="first")

    directory = Path(backup_env["BACKUP_DIR"])
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for path in (manifest.path, manifest.manifest_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = json.loads(manifest.manifest_path.read_text())
    for key in ("name", "created_at", "engine", "database", "server_version", "tool_version", "format", "file"):
        assert data[key], key
    assert data["engine"] == migrated_db.vendor
    assert data["created_at"].endswith("+00:00")
    assert data["size_bytes"] == manifest.path.stat().st_size
    assert data["sha256"] == hashlib.sha256(manifest.path.read_bytes()).hexdigest()
    assert data["reason"] == "manual"
    assert data["tables"]["users"] == 2
    assert data["tables"] == get_engine(migrated_db.alias).row_counts()
    assert "0004_default_pricing_configs" in data["migrations"]["billing"]
    assert "password" not in json.dumps(data["database"]).lower()
    assert [entry["event"] for entry in audit.read_events()] == ["backup.start", "backup.end"]
    end = audit.read_events()[-1]
    assert end["outcome"] == "ok" and end["bytes"] == manifest.size_bytes and end["duration_s"] >= 0
    assert not [p for p in directory.iterdir() if p.name.startswith(".")], "no temporary file left behind"


@pytest.mark.parametrize("name", ["", "../escape", "a/b", "a..b", ".hidden", "x" * 101, "semi;colon"])
def test_invalid_names_are_refused_and_nothing_is_written(migrated_db, backup_env, name):
    with pytest.raises(BadInput):
        backups.create_backup(using=migrated_db.alias, name=name)
    assert not Path(backup_env["BACKUP_DIR"]).exists() or not list(Path(backup_env["BACKUP_DIR"]).iterdir())


def test_existing_name_is_refused(migrated_db, backup_env):
    first = backups.create_backup(using=migrated_db.alias, name="same")
    before = first.manifest_path.read_bytes()
    with pytest.raises(BadInput, match="already exists"):
        backups.create_backup(using=migrated_db.alias, name="same")
    assert first.manifest_path.read_bytes() == before
    assert listed_names() == ["same"]


def test_list_is_newest_first_and_ignores_files_without_manifest(migrated_db, backup_env):
    backups.create_backup(using=migrated_db.alias, name="older")
    backups.create_backup(using=migrated_db.alias, name="newer")
    directory = Path(backup_env["BACKUP_DIR"])
    (directory / "orphan.sqlite3").write_bytes(b"no manifest")
    (directory / "broken.json").write_text("{not json")
    assert listed_names() == ["newer", "older"]

    result = manage_in_env(backup_env, "list_backups", "--json", url=migrated_db.url)
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in json.loads(result.stdout)] == ["newer", "older"]
    human = manage_in_env(backup_env, "list_backups", url=migrated_db.url)
    assert (
        "newer" in human.stdout
        and f"billing.{latest_migration('billing')[:4]}" in human.stdout
        and migrated_db.vendor in human.stdout
    )


def test_backup_db_command_json_and_exit_codes(migrated_db, backup_env):
    made = manage_in_env(backup_env, "backup_db", "--name", "cli", "--json", url=migrated_db.url)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["name"] == "cli"
    again = manage_in_env(backup_env, "backup_db", "--name", "cli", url=migrated_db.url)
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1 and "already exists" in again.stderr and "Traceback" not in again.stderr


# --- verification ---
def test_verify_good_backup_with_restore_test_drops_the_scratch_database(migrated_db, backup_env):
    add_users(migrated_db, 3)
    backups.create_backup(using=migrated_db.alias, name="good")
    report = backups.verify_backup("good", restore_test=True, using=migrated_db.alias)
    assert report.ok, report.failures()
    assert [check["name"] for check in report.checks] == ["checksum", "readable", "restore_test"]
    assert report.restore_test["tables"]["users"] == 3
    scratch = report.restore_test["database"]
    assert "_verify_" in scratch
    if migrated_db.vendor == "postgresql":
        assert migrated_db.scalar("SELECT count(*) FROM pg_database WHERE datname = %s", [scratch]) == 0
    else:
        assert not Path(scratch).exists()


@pytest.mark.parametrize("how", ["flip", "truncate"])
def test_corrupted_backup_fails_verification_with_exit_1(migrated_db, backup_env, how):
    manifest = backups.create_backup(using=migrated_db.alias, name="bad")
    corrupt(manifest.path, how)
    report = backups.verify_backup("bad")
    assert not report.ok
    assert report.checks[0]["name"] == "checksum" and not report.checks[0]["ok"]
    result = manage_in_env(backup_env, "verify_backup", "bad", url=migrated_db.url)
    assert result.returncode == 1
    assert "failed verification" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("name", ["missing", "../etc", "a/b", ".."])
def test_verify_unknown_or_invalid_name_exits_2(migrated_db, backup_env, name):
    with pytest.raises(BadInput):
        backups.verify_backup(name)


def test_verify_command_unknown_name_exits_2(migrated_db, backup_env):
    result = manage_in_env(backup_env, "verify_backup", "../nope", url=migrated_db.url)
    assert result.returncode == 2 and result.stderr.startswith("error: invalid backup name")


# --- prune ---
def test_prune_keeps_the_newest_and_respects_dry_run_and_reasons(migrated_db, backup_env):
    for name, reason in (("m1", "manual"), ("p1", "pre-migrate"), ("m2", "manual"), ("p2", "pre-migrate")):
        backups.create_backup(using=migrated_db.alias, name=name, reason=reason)
    assert [m.name for m in backups.prune_backups(1, dry_run=True)] == ["m2", "p1", "m1"]
    assert listed_names() == ["p2", "m2", "p1", "m1"]

    removed = backups.prune_backups(1, reasons={"pre-migrate", "pre-restore"})
    assert [m.name for m in removed] == ["p1"]
    assert listed_names() == ["p2", "m2", "m1"]
    assert not (Path(backup_env["BACKUP_DIR"]) / "p1.json").exists()
    assert not removed[0].path.exists()

    with pytest.raises(BadInput):
        backups.prune_backups(0)
    result = manage_in_env(backup_env, "prune_backups", "--keep", "2", "--json", url=migrated_db.url)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["removed"] == ["m1"]
    assert listed_names() == ["p2", "m2"]
    assert manage_in_env(backup_env, "prune_backups", "--keep", "0", url=migrated_db.url).returncode == 2


# --- interrupted backups never look valid ---
def _children(pid: int) -> list[tuple[int, str, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            comm = (entry / "comm").read_text().strip()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append((int(entry.name), comm, cmdline))
    return found


def _wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _hold_lock(db):
    """Another session that blocks the dump: an exclusive lock on users, inside an open transaction."""
    if db.vendor == "postgresql":
        conn = psycopg2.connect(dbname=db.name, user="postgres", host="127.0.0.1", port=5432)
        conn.cursor().execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        return conn
    conn = sqlite3.connect(db.name, isolation_level=None)
    conn.execute("BEGIN EXCLUSIVE")
    return conn


def test_killed_dump_or_killed_command_leaves_nothing_listed(migrated_db, backup_env):
    env = {**backup_env, "MIGRATION_LOCK_TIMEOUT": "60s"}
    directory = Path(backup_env["BACKUP_DIR"])
    argv = [sys.executable, "manage.py", "backup_db", "--database-url", migrated_db.url, "--name"]
    blocker = _hold_lock(migrated_db)
    try:
        if migrated_db.vendor == "postgresql":
            # pg_dump itself killed mid-dump: the command fails with exit 1 and removes its temporary file.
            proc = subprocess.Popen([*argv, "dumpkill"], cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
            pg_dump = _wait_for(
                lambda: [pid for pid, comm, cmd in _children(proc.pid) if comm == "pg_dump" and "--snapshot" in cmd]
            )[0]
            os.kill(pg_dump, signal.SIGKILL)
            assert proc.wait(timeout=30) == 1
            assert "pg_dump" in proc.stderr.read()
            assert not any("dumpkill" in p.name for p in directory.iterdir())
            assert audit.read_events()[-1]["outcome"] == "failed"
        # The command itself killed at an arbitrary instant (here: while its dump waits for the lock).
        proc = subprocess.Popen([*argv, "cmdkill"], cwd=ROOT, env=env)
        _wait_for(lambda: directory.is_dir() and any(p.name.endswith(".tmp") for p in directory.iterdir()))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        blocker.rollback()
        blocker.close()
    assert listed_names() == []
    assert not (directory / "cmdkill.json").exists()
    listed = manage_in_env(backup_env, "list_backups", "--json", url=migrated_db.url)
    assert json.loads(listed.stdout) == []
