"""What the operator sees before and around a restore: the prompt says what will change, a closed
standard input says how to proceed, and list_backups marks a backup whose file no longer matches."""

from __future__ import annotations

import json
import subprocess

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
