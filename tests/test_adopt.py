"""backup_db --adopt: the old runbook's dumps (`pg_dump db > backup.sql`, `pg_dump -Fc`) and SQLite
files become backups that verify, rehearse and restore like ours. Real pg_dump, real servers."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from migrations_ops import backups
from migrations_ops.api import safe_migrate
from migrations_ops.engines import get_engine
from migrations_ops.errors import BadInput
from migrations_ops.options import SafeMigrateOptions
from tests.dbs import postgres_url
from tests.helpers import add_users, seed_baseline

ROOT = Path(__file__).resolve().parent.parent


def pg_dump(db, target: Path, *flags: str) -> None:
    """As the old runbook did it: pg_dump's own output, no help from us."""
    with open(target, "wb") as out:
        subprocess.run(["pg_dump", *flags, "-d", postgres_url(db.name)], stdout=out, check=True, timeout=120)


def manage_in(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=180
    )


def counts(db) -> dict[str, int]:
    """Rows per table, but for the audit trail (a restore adds its own MigrationRun row)."""
    found = get_engine(db.alias).row_counts()
    found.pop("migrations_ops_migrationrun", None)
    return found


@pytest.mark.postgres_only
def test_a_plain_sql_dump_from_the_runbook_is_adopted_verified_rehearsed_and_restored(
    pg_baseline_db, backup_env, tmp_path, monkeypatch
):
    db = pg_baseline_db
    seed_baseline(db)
    pg_dump(db, tmp_path / "backup.sql")
    before = counts(db)

    # A bare file name in the current directory is a path: told how to adopt it, nothing restored.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BadInput, match="adopt it first with `manage.py backup_db --adopt backup.sql`"):
        backups.restore_backup("backup.sql", using=db.alias)

    adopt = ("backup_db", "--adopt", "backup.sql", "--name", "old", "--json", "--database-url", db.url)
    adopted = manage_in(tmp_path, backup_env, *adopt)
    assert adopted.returncode == 0, adopted.stderr
    manifest = json.loads(adopted.stdout)
    assert manifest["reason"] == "imported" and manifest["format"] == "pg_plain"
    assert {t: n for t, n in manifest["tables"].items() if t != "migrations_ops_migrationrun"} == before
    assert manifest["migrations"]["accounts"] == manifest["migrations"]["billing"] == ["0001_initial"]
    assert manifest["source"] == str(tmp_path / "backup.sql")
    assert manifest["tool_version"].startswith("pg_dump 15") and manifest["server_version"].startswith("15")
    assert backups.verify_backup("old", using=db.alias).ok

    # Rehearse the upgrade from it: the copy is migrated, the live database only read.
    rehearsal = safe_migrate(db.alias, SafeMigrateOptions(rehearse=True, from_backup="old"))
    assert rehearsal.status == "rehearsed", rehearsal.error
    assert counts(db) == before

    db.query("DELETE FROM subscriptions")
    backups.restore_backup("old", using=db.alias, safety_backup=False)
    assert counts(db) == before


@pytest.mark.postgres_only
def test_a_custom_format_dump_is_adopted_and_restores(pg_migrated_db, backup_env, tmp_path):
    db = pg_migrated_db
    add_users(db, 4)
    pg_dump(db, tmp_path / "nightly.dump", "-Fc")
    before = counts(db)
    manifest = backups.adopt_backup(tmp_path / "nightly.dump", using=db.alias)
    assert manifest.name.startswith("nightly-") and manifest.name.endswith("-imported")
    assert manifest.format == "pg_custom" and manifest.database["name"] == db.name
    assert manifest.tables == {**before, "migrations_ops_migrationrun": 0} and manifest.tables["users"] == 4
    assert manifest.sha256 == backups.sha256_of(tmp_path / "nightly.dump")
    assert [m.name for m in backups.list_backups()] == [manifest.name]

    db.query("DELETE FROM users WHERE email LIKE 'user1%%'")
    backups.restore_backup(manifest.name, using=db.alias, safety_backup=False)
    assert counts(db) == before


def offered_files(db, tmp_path: Path) -> dict[str, Path]:
    """What an operator might offer for adoption besides a good dump (full.sql, made here too)."""
    pg_dump(db, tmp_path / "full.sql")
    data = (tmp_path / "full.sql").read_bytes()
    (tmp_path / "cut.sql").write_bytes(data[: len(data) * 2 // 3])
    (tmp_path / "notes.txt").write_text("not a dump\n")
    sqlite_file = tmp_path / "app.sqlite3"
    with sqlite3.connect(sqlite_file) as conn:
        conn.execute("CREATE TABLE t (a)")
    return {
        "truncated": tmp_path / "cut.sql",
        "not_a_dump": tmp_path / "notes.txt",
        "sqlite": sqlite_file,
        "missing": tmp_path / "missing.sql",
    }


@pytest.mark.postgres_only
@pytest.mark.parametrize(
    ("offered", "expected"),
    [
        ("truncated", "truncated"),
        ("not_a_dump", "is not a pg_dump"),
        ("sqlite", "is a sqlite dump and the database is postgresql"),
        ("missing", "no file at"),
    ],
    ids=["truncated", "not-a-dump", "sqlite-file", "missing"],
)
def test_a_truncated_or_foreign_file_is_refused_and_nothing_is_adopted(
    pg_migrated_db, backup_env, tmp_path, offered, expected
):
    db = pg_migrated_db
    path = offered_files(db, tmp_path)[offered]
    with pytest.raises(BadInput, match=expected):
        backups.adopt_backup(path, using=db.alias)
    backup_dir = Path(backup_env["BACKUP_DIR"])
    # Refused before BACKUP_DIR is made, or after: either way nothing is listed and nothing is left in it.
    assert backups.list_backups() == [] and (not backup_dir.exists() or not list(backup_dir.iterdir()))


@pytest.mark.postgres_only
def test_a_name_already_taken_is_refused(pg_migrated_db, backup_env, tmp_path):
    db = pg_migrated_db
    pg_dump(db, tmp_path / "full.sql")
    backups.adopt_backup(tmp_path / "full.sql", name="same", using=db.alias)
    with pytest.raises(BadInput, match="already exists"):
        backups.adopt_backup(tmp_path / "full.sql", name="same", using=db.alias)


def test_a_sqlite_file_is_adopted_and_restores(sqlite_migrated_db, backup_env, tmp_path):
    db = sqlite_migrated_db
    add_users(db, 3)
    db.connection.close()
    shutil.copyfile(db.name, tmp_path / "copied.sqlite3")
    before = counts(db)
    manifest = backups.adopt_backup(tmp_path / "copied.sqlite3", name="copied", using=db.alias)
    assert (manifest.format, manifest.reason) == ("sqlite3", "imported")
    assert manifest.tables == {**before, "migrations_ops_migrationrun": 0}
    db.query("DELETE FROM users")
    backups.restore_backup("copied", using=db.alias, safety_backup=False)
    assert counts(db) == before
