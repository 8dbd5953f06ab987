"""What the bench scripts share: the server they measure on, admin statements, `manage.py` runs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")
BASE_URL = ADMIN_URL.rsplit("/", 1)[0]


def connect(url: str):
    """An autocommit connection to `url` (CREATE/DROP DATABASE cannot run in a transaction)."""
    conn = psycopg2.connect(url.replace("postgres://", "postgresql://"))
    conn.autocommit = True
    return conn


def admin_connection():
    """An autocommit connection to the admin database."""
    return connect(ADMIN_URL)


def execute(url: str, sql: str) -> None:
    """Run one statement on the database of `url`, outside a transaction."""
    conn = connect(url)
    try:
        with conn.cursor() as cursor:
            cursor.execute(sql)
    finally:
        conn.close()


def admin(sql: str) -> None:
    execute(ADMIN_URL, sql)


def _run_manage(url: str, args: tuple[str, ...], env: dict | None, capture: bool) -> tuple[str, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "manage.py", *args, "--database-url", url],
        cwd=ROOT,
        check=True,
        env={**os.environ, **(env or {})},
        capture_output=capture,
        text=True,
    )
    return result.stdout or "", time.monotonic() - started


def manage(url: str, *args: str, env: dict | None = None) -> float:
    """Run `manage.py <args> --database-url url` (raises on failure); return its wall time."""
    return _run_manage(url, args, env, capture=False)[1]


def manage_output(url: str, *args: str, env: dict | None = None) -> tuple[str, float]:
    """As `manage`, capturing stdout: the last line it printed (a command's summary) and the wall time."""
    stdout, seconds = _run_manage(url, args, env, capture=True)
    lines = stdout.strip().splitlines()
    return (lines[-1] if lines else ""), seconds
