"""What the operator sees before and around a restore: the prompt says what will change, a closed
standard input says how to proceed, and list_backups marks a backup whose file no longer matches."""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.dbs import ROOT, manage_argv, manage_env


def manage(db, tmp_path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = manage_env("config.settings", BACKUP_DIR=str(tmp_path / "b"), MIGRATION_LOG=str(tmp_path / "m.log"))
    return subprocess.run(
        manage_argv(db.url, *args), cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def data_file(directory, name: str):
    (path,) = [p for p in directory.glob(f"{name}.*") if p.suffix != ".json"]
    return path


def take_backup(db, tmp_path, name: str = "before") -> None:
    done = manage(db, tmp_path, "backup_db", "--name", name)
    assert done.returncode == 0, done.stderr


def test_the_prompt_shows_what_changes_and_a_closed_stdin_says_to_pass_noinput(migrated_db, tmp_path):
    take_backup(migrated_db, tmp_path)
    migrated_db.query("INSERT INTO django_content_type (app_label, model) VALUES ('later', 'thing')")
    before = migrated_db.scalar("SELECT COUNT(*) FROM django_content_type")

    wrong = manage(migrated_db, tmp_path, "restore_db", "before", stdin="not-the-name\n")
    assert wrong.returncode == 2 and "did not match" in wrong.stderr
    assert "Migrations (now -> in the backup):" in wrong.stdout
    assert f"django_content_type: {before} -> {before - 1}" in wrong.stdout
    assert "CHANGES" not in wrong.stdout  # same migrations now and in the backup

    closed = manage(migrated_db, tmp_path, "restore_db", "before", stdin="")
    assert closed.returncode == 2
    assert "pass --noinput" in closed.stderr and "nothing was changed" in closed.stderr
    assert migrated_db.scalar("SELECT COUNT(*) FROM django_content_type") == before


def test_list_backups_marks_a_file_that_no_longer_matches(migrated_db, tmp_path):
    take_backup(migrated_db, tmp_path, "whole")
    take_backup(migrated_db, tmp_path, "cut")
    take_backup(migrated_db, tmp_path, "flipped")
    directory = tmp_path / "b"
    cut = data_file(directory, "cut")
    cut.write_bytes(cut.read_bytes()[:-100])
    flipped = data_file(directory, "flipped")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    flipped.write_bytes(bytes(data))

    listed = manage(migrated_db, tmp_path, "list_backups")
    assert listed.returncode == 0
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert "DAMAGED" in rows["cut"] and "truncated or altered" in listed.stderr
    assert "size ok" in rows["whole"] and "size ok" in rows["flipped"]

    verified = json.loads(manage(migrated_db, tmp_path, "list_backups", "--verify", "--json").stdout)
    problems = {entry["name"]: entry["file_problems"] for entry in verified}
    assert problems["whole"] == []
    assert "truncated" in problems["cut"][0] and "corrupted" in problems["flipped"][0]


def preview_of(db, tmp_path) -> list[str]:
    """The restore prompt's lines for backup 'before' (the confirmation refused: nothing changes)."""
    refused = manage(db, tmp_path, "restore_db", "before", stdin="no\n")
    assert refused.returncode == 2 and "did not match" in refused.stderr, refused.stderr
    return refused.stdout.splitlines()


def writes_section(lines: list[str]) -> list[str]:
    start = next(i for i, line in enumerate(lines) if line.startswith("Writes since the backup"))
    end = next(i for i, line in enumerate(lines) if line.startswith("This REPLACES"))
    return lines[start:end]


def flushed(db, sql: str) -> None:
    """Run ``sql``, then have this session report its statistics before the next statement returns
    (the server publishes a session's counters at most once a second otherwise)."""
    db.query(sql)
    db.query("SELECT pg_stat_force_next_flush()")


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_the_prompt_shows_the_writes_since_the_backup_per_table(migrated_db, tmp_path):
    db = migrated_db
    flushed(db, "INSERT INTO django_content_type (app_label, model) VALUES ('early', 'a'), ('early', 'b')")
    take_backup(db, tmp_path)
    manifest = json.loads((tmp_path / "b" / "before.json").read_text())
    assert manifest["write_counters"]["django_content_type"] >= 2

    # 2 inserts, 2 updates, 1 delete: 5 writes, though the row count moved by only 1.
    flushed(db, "INSERT INTO django_content_type (app_label, model) VALUES ('later', 'a'), ('later', 'b')")
    flushed(db, "UPDATE django_content_type SET model = model || '2' WHERE app_label = 'later'")
    flushed(db, "DELETE FROM django_content_type WHERE app_label = 'early' AND model = 'a'")
    section = writes_section(preview_of(db, tmp_path))
    assert section == [
        "Writes since the backup (rows inserted, updated or deleted, as the server counts them):",
        "  django_content_type: 5",
    ]

    # Counters that went down were reset since the backup: the difference would be a lie.
    flushed(db, "SELECT pg_stat_reset_single_table_counters('django_content_type'::regclass)")
    assert "  django_content_type: unknown (statistics reset)" in writes_section(preview_of(db, tmp_path))

    # A manifest written before the counters were recorded still restores; the writes are unknown.
    del manifest["write_counters"]
    (tmp_path / "b" / "before.json").write_text(json.dumps(manifest))
    assert writes_section(preview_of(db, tmp_path)) == [
        "Writes since the backup: unknown, the backup recorded no write counters (adopted, or taken by an "
        "older version)"
    ]


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_the_prompt_says_in_one_line_that_sqlite_cannot_tell_the_writes(migrated_db, tmp_path):
    take_backup(migrated_db, tmp_path)
    assert json.loads((tmp_path / "b" / "before.json").read_text())["write_counters"] is None
    migrated_db.query("INSERT INTO django_content_type (app_label, model) VALUES ('later', 'thing')")
    assert writes_section(preview_of(migrated_db, tmp_path)) == [
        "Writes since the backup: unknown, sqlite keeps no write counters, so it cannot tell"
    ]
