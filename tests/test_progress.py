"""Long work shows progress on a terminal and stays quiet with --verbosity 0 or when not a TTY."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import seed_baseline

ROOT = Path(__file__).resolve().parent.parent


def run_with_stderr_on_a_terminal(db, tmp_path, *args: str) -> tuple[int, str]:
    """Run manage.py with stderr attached to a real pseudo-terminal; return (exit code, what it drew)."""
    leader, follower = pty.openpty()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings_subprocess",
        "BACKUP_DIR": str(tmp_path / "backups"),
        "MIGRATION_LOG": str(tmp_path / "log"),
    }
    proc = subprocess.Popen(
        [sys.executable, "manage.py", *args, "--database-url", db.url],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_safe_migrate_draws_backup_progress_on_a_terminal_only(baseline_db, tmp_path):
    seed_baseline(baseline_db)
    code, drawn = run_with_stderr_on_a_terminal(baseline_db, tmp_path, "safe_migrate", "--noinput", "--dry-run")
    assert code == 0, drawn
    assert "backup: " in drawn and "\r" in drawn

    code, drawn = run_with_stderr_on_a_terminal(
        baseline_db, tmp_path, "safe_migrate", "--noinput", "--dry-run", "--verbosity", "0"
    )
    assert code == 0, drawn
    assert drawn == ""

    piped = subprocess.run(
        [sys.executable, "manage.py", "backup_db", "--database-url", baseline_db.url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings_subprocess",
            "BACKUP_DIR": str(tmp_path / "b2"),
            "MIGRATION_LOG": str(tmp_path / "log"),
        },
    )
    assert piped.returncode == 0, piped.stderr
    assert piped.stderr == ""
