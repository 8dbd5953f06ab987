"""What the bench scripts share: the server they measure on, admin statements, `manage.py` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
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


def explain(cursor, statement: str, options: str = "ANALYZE, BUFFERS") -> dict:
    """`EXPLAIN (<options>, FORMAT JSON) <statement>` (which runs it): the top of the document,
    with "Plan", "Execution Time" and "Planning Time"."""
    cursor.execute(f"EXPLAIN ({options}, FORMAT JSON) {statement}")
    document = cursor.fetchone()[0]  # psycopg2 decodes json; text where a cast made it so
    return (document if isinstance(document, list) else json.loads(document))[0]


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


# --- shared by run.py and the bench_*.py scripts -------------------------------------------------
BASELINE = (("accounts", "0001_initial"), ("billing", "0001_initial"))


def use_server(base_url: str) -> None:
    """Measure on another server (a URL without the database name); admin statements go to its `postgres`."""
    global ADMIN_URL, BASE_URL
    BASE_URL, ADMIN_URL = base_url, f"{base_url}/postgres"


def scratch_env(work: Path) -> dict[str, str]:
    """Settings for the commands a bench runs: backups and the audit log in its scratch directory."""
    return {"BACKUP_DIR": str(work / "backups"), "MIGRATION_LOG": str(work / "migration.log"), "BACKUP_KEEP": "1000"}


def url_of(name: str) -> str:
    """The URL of database `name` on the server measured."""
    return f"{BASE_URL}/{name}"


def manage_argv(url: str, *args: str) -> list[str]:
    return [sys.executable, "manage.py", *args, "--database-url", url]


def run_measured(argv: list[str], env: dict | None = None, cwd: Path = ROOT, check: bool = True) -> dict:
    """Run one process as /usr/bin/time would: wall time (time.monotonic), and the CPU and peak memory
    of the process and the children it waited for (os.wait4's rusage). Server-side CPU is not in it.
    stdout and stderr go to temporary files (a pipe could fill up before wait4 returns)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        started = time.monotonic()
        proc = subprocess.Popen(argv, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))[:200]} exited {proc.returncode}: {stderr.strip()[-800:]}")
    return {
        "wall_s": round(wall, 3),
        "cpu_user_s": round(usage.ru_utime, 3),
        "cpu_sys_s": round(usage.ru_stime, 3),
        "maxrss_mb": round(usage.ru_maxrss / 1024, 1),
        "returncode": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
    }


def shell(pipeline: str) -> list[str]:
    """argv running a shell pipeline that fails when any part fails."""
    return ["bash", "-o", "pipefail", "-c", pipeline]


def drop_database(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def copy_database(name: str, template: str, settled: bool = False) -> None:
    """A fresh identical copy (CREATE DATABASE ... TEMPLATE): the template must have no session.

    ``settled``: copied file by file (STRATEGY FILE_COPY, PostgreSQL 15+) and followed by a CHECKPOINT, so
    a measurement starts with no checkpoint pending. The default strategy of 15+ writes the whole copy
    into the WAL; with max_wal_size 1GB that forced checkpoints during the first minute of whatever ran
    on the copy, and the same burst with no migration stalled about a second in 5 runs of 6."""
    drop_database(name)
    strategy = " STRATEGY FILE_COPY" if settled and server_major() >= 15 else ""
    admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"{strategy}')
    if settled:
        admin("CHECKPOINT")


def server_major() -> int:
    connection = connect(ADMIN_URL)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version_num")
            return int(cursor.fetchone()[0]) // 10000
    finally:
        connection.close()


def migrate_to_baseline(url: str) -> None:
    """The production state before the upgrade: accounts 0001 + billing 0001 (and their dependencies)."""
    for app, target in BASELINE:
        manage(url, "migrate", app, target, "--noinput", "-v0")
