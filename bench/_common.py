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


def admin_connection():
    """An autocommit connection to the admin database (CREATE/DROP DATABASE cannot run in a transaction)."""
    conn = psycopg2.connect(ADMIN_URL.replace("postgres://", "postgresql://"))
    conn.autocommit = True
    return conn


def admin(sql: str) -> None:
    conn = admin_connection()
    with conn.cursor() as cursor:
        cursor.execute(sql)
    conn.close()


def manage(url: str, *args: str, env: dict | None = None) -> float:
    """Run `manage.py <args> --database-url url` (raises on failure); return its wall time."""
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "manage.py", *args, "--database-url", url],
        cwd=ROOT,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return time.monotonic() - started
