"""Benchmark: validate_db against the same checks' raw SQL through psql, and against a backup.

A PostgreSQL database migrated to the head and seeded with N subscriptions (default 1M, with
`seed_demo_data`) is validated in this process (Django start-up excluded). Every SQL statement
the checks send is captured (savepoints left out) and replayed as one script through `psql`: the
ratio validate_db / psql is what the framework adds. The backup (`create_backup`) is timed on the
same database; `--deep` (amcheck, installed in the bench database) is measured separately.

    .venv/bin/python bench/bench_validate.py --subscriptions 1000000 --rounds 3
    .venv/bin/python bench/bench_validate.py --reuse     # keep the seeded database between runs

Needs the PostgreSQL server of BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres)
and `psql`. Not a test: it prints figures (and a JSON line with --json).

bench/run.py uses ValidationWorker: this script with `--serve URL` as a child process that sets
Django up once, then validates or captures the checks' SQL on request (one JSON line per answer),
so validate_db in-process alternates with its SQL through psql.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
from _common import BASE_URL, ROOT, admin, admin_connection, manage

DB_NAME = "bench_validate"


def database_exists(name: str) -> bool:
    conn = admin_connection()
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        found = cursor.fetchone() is not None
    conn.close()
    return found


def prepare(url: str, subscriptions: int, users: int, reuse: bool) -> float | None:
    """Create, migrate and seed the bench database; return the seeding time (None when reused)."""
    if reuse and database_exists(DB_NAME):
        return None
    admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
    admin(f'CREATE DATABASE "{DB_NAME}"')
    settings = {"DJANGO_SETTINGS_MODULE": "config.settings"}
    manage(url, "migrate", "--noinput", "-v", "0", env=settings)
    seconds = manage(url, "seed_demo_data", "--users", str(users), "--subscriptions", str(subscriptions), env=settings)
    admin_db = psycopg2.connect(url.replace("postgres://", "postgresql://"))
    admin_db.autocommit = True
    with admin_db.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    admin_db.close()
    return seconds


class Capture:
    """Records every statement sent on a connection (rendered with its parameters)."""

    def __init__(self, connection) -> None:
        self.connection = connection
        self.statements: list[str] = []

    def __call__(self, execute, sql, params, many, context):
        if not sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            with self.connection.connection.cursor() as raw:
                rendered = raw.mogrify(sql, params) if params else sql.encode()
            self.statements.append(rendered.decode() if isinstance(rendered, bytes) else rendered)
        return execute(sql, params, many, context)


def capture_script(connection, deep: bool, path: Path) -> int:
    """Run the checks once, writing every statement they send to `path` as a psql script; the count."""
    from migrations_ops.validation import run_validation

    connection.ensure_connection()
    capture = Capture(connection)
    with connection.execute_wrapper(capture):
        run_validation("default", deep=deep)
    path.write_text("".join(statement.rstrip().rstrip(";") + ";\n" for statement in capture.statements))
    return len(capture.statements)


def psql_script(url: str, script: Path) -> list[str]:
    """argv replaying a captured script through psql, output discarded."""
    return ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", str(script), "-o", os.devnull]


def serve(url: str) -> None:
    """The child of ValidationWorker: `run [deep]` validates, `capture PATH [deep]` writes the script."""
    import resource

    os.environ.update(DATABASE_URL=url, DJANGO_SETTINGS_MODULE="config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from migrations_ops.validation import run_validation

    for line in sys.stdin:
        command, *rest = line.split()
        if command == "run":
            before = resource.getrusage(resource.RUSAGE_SELF)
            started = time.monotonic()
            report = run_validation("default", deep="deep" in rest)
            wall = time.monotonic() - started
            after = resource.getrusage(resource.RUSAGE_SELF)
            answer = {
                "wall_s": round(wall, 3),
                "cpu_user_s": round(after.ru_utime - before.ru_utime, 3),
                "cpu_sys_s": round(after.ru_stime - before.ru_stime, 3),
                "maxrss_mb": round(after.ru_maxrss / 1024, 1),
                "ok": report.ok,
                "failed": [check.name for check in report.checks if not check.ok],
            }
        elif command == "capture":
            answer = {"statements": capture_script(connection, "deep" in rest, Path(rest[0]))}
        else:
            answer = {"error": f"unknown request {command!r}"}
        print(json.dumps(answer), flush=True)


class ValidationWorker:
    """validate_db in a Python process started once (Django start-up excluded from each run)."""

    def __init__(self, url: str, env: dict | None = None) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--serve", url],
            cwd=ROOT,
            env={**os.environ, **(env or {})},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def request(self, line: str) -> dict:
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"the validation worker ended (exit {self.process.wait()})")
        return json.loads(answer)

    def run(self, deep: bool = False) -> dict:
        return self.request("run deep" if deep else "run")

    def capture(self, path: Path, deep: bool = False) -> int:
        return self.request(f"capture {path}{' deep' if deep else ''}")["statements"]

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


def timed_psql(url: str, script: Path) -> float:
    started = time.monotonic()
    subprocess.run(psql_script(url, script), check=True)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=None, help="default: half the subscriptions")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per measurement (median)")
    parser.add_argument("--reuse", action="store_true", help="reuse an existing bench database")
    parser.add_argument("--keep", action="store_true", help="keep the bench database afterwards")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--serve", metavar="URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    url = f"{BASE_URL}/{DB_NAME}"
    seed_s = prepare(url, args.subscriptions, args.users or max(1, args.subscriptions // 2), args.reuse)

    backup_dir = tempfile.mkdtemp(prefix="bench-validate-")
    os.environ.update(
        DATABASE_URL=url,
        DJANGO_SETTINGS_MODULE="config.settings",
        BACKUP_DIR=backup_dir,
        MIGRATION_LOG=str(Path(backup_dir) / "migration.log"),
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.db import connection

    from migrations_ops.backups import create_backup
    from migrations_ops.validation import run_validation

    def run(deep: bool) -> tuple[float, object]:
        started = time.monotonic()
        report = run_validation("default", deep=deep)
        return time.monotonic() - started, report

    def script_of(deep: bool) -> tuple[Path, int]:
        path = Path(backup_dir) / f"checks{'-deep' if deep else ''}.sql"
        return path, capture_script(connection, deep, path)

    def alternate(deep: bool, script: Path) -> tuple[float, float]:
        """Median seconds of validate_db and of its statements through psql, alternating rounds."""
        framework, raw = [], []
        for _ in range(args.rounds):
            raw.append(timed_psql(url, script))
            framework.append(run(deep)[0])
        return statistics.median(framework), statistics.median(raw)

    figures: dict[str, object] = {"subscriptions": args.subscriptions, "seed_s": seed_s}
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        figures["database_mb"] = round(cursor.fetchone()[0] / 2**20)

    # quick: warm the cache once, then alternate framework and psql
    _, report = run(False)
    figures["ok"] = report.ok
    figures["rows"] = sum(report.tables.values())
    script, figures["statements"] = script_of(False)
    figures["validate_s"], figures["psql_s"] = alternate(False, script)
    figures["validate_over_psql"] = figures["validate_s"] / figures["psql_s"]
    slowest = sorted(run(False)[1].checks, key=lambda c: c.duration_s, reverse=True)[:5]
    figures["slowest_checks"] = {c.name: round(c.duration_s, 3) for c in slowest}

    # the backup of the same database
    started = time.monotonic()
    create_backup(using="default", name=f"bench-{int(time.time())}", reason="manual")
    figures["backup_s"] = time.monotonic() - started
    figures["validate_over_backup"] = figures["validate_s"] / figures["backup_s"]

    # deep, separately: amcheck installed in this (scratch) database
    with connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    run(True)
    deep_script, _ = script_of(True)
    figures["deep_validate_s"], figures["deep_psql_s"] = alternate(True, deep_script)
    figures["deep_over_psql"] = figures["deep_validate_s"] / figures["deep_psql_s"]
    connection.close()

    print(
        f"database: {figures['subscriptions']:,} subscriptions, {figures['rows']:,} rows, {figures['database_mb']} MB"
    )
    if seed_s is not None:
        print(f"seeded in {seed_s:.1f} s")
    print(f"validate_db (quick, {args.rounds} rounds, median): {figures['validate_s']:.3f} s, ok={figures['ok']}")
    print(f"same SQL through psql ({figures['statements']} statements): {figures['psql_s']:.3f} s")
    print(f"  ratio validate_db / psql: {figures['validate_over_psql']:.2f}x (target <= 1.25x)")
    print(
        f"backup: {figures['backup_s']:.3f} s; ratio validate_db / backup: {figures['validate_over_backup']:.2f}x "
        "(target <= 0.2x)"
    )
    print(
        f"validate_db --deep: {figures['deep_validate_s']:.3f} s; psql {figures['deep_psql_s']:.3f} s; "
        f"ratio {figures['deep_over_psql']:.2f}x"
    )
    print("slowest checks: " + ", ".join(f"{name} {s:.3f} s" for name, s in figures["slowest_checks"].items()))
    if args.json:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))
    if not args.keep and not args.reuse:
        admin(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


if __name__ == "__main__":
    main()
