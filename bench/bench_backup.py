"""Benchmark: backup_db / restore_db against the raw PostgreSQL tools on a seeded database.

Not a test. Usage (PostgreSQL server reachable, client tools on PATH):

    .venv/bin/python bench/bench_backup.py [--subscriptions 1000000] [--users 200000] [--runs 3] [--keep]

Creates `bench_backup_src` (migrated and seeded with `seed_demo_data`), then measures, median of
--runs: plain `pg_dump > file` (the runbook), `pg_dump -Fc` (default gzip, one run), candidate
formats, `manage.py backup_db`, `pg_restore --single-transaction` into a fresh database and
`manage.py restore_db --target-database-url` into a fresh database; and `engine.row_counts()`.
Prints a table and the ratios the issue sets targets for; --json writes them as JSON too.
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

ROOT = Path(__file__).resolve().parent.parent
PG = {"PGHOST": "127.0.0.1", "PGPORT": "5432", "PGUSER": "postgres"}
SOURCE = "bench_backup_src"


def sh(argv, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, env={**os.environ, **PG, **(env or {})}, **kwargs)


def psql(sql: str, db: str = "postgres") -> str:
    return sh(["psql", "-X", "-At", "-d", db, "-c", sql], capture_output=True, text=True).stdout.strip()


def url(db: str) -> str:
    return f"postgres://postgres@127.0.0.1:5432/{db}"


def manage(*args: str, env: dict[str, str]) -> None:
    sh([sys.executable, "manage.py", *args], env=env, cwd=ROOT, stdout=subprocess.DEVNULL)


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_of(runs: int, fn, before=None) -> float:
    times = []
    for _ in range(runs):
        if before:
            before()
        times.append(timed(fn))
    return statistics.median(times)


def recreate(db: str) -> None:
    psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    psql(f'CREATE DATABASE "{db}"')


def prepare_source(users: int, subscriptions: int, env: dict[str, str]) -> None:
    exists = psql(f"SELECT 1 FROM pg_database WHERE datname = '{SOURCE}'")
    if exists and psql("SELECT count(*) FROM subscriptions", SOURCE) == str(subscriptions):
        return
    recreate(SOURCE)
    manage("migrate", "--noinput", "-v0", "--database-url", url(SOURCE), env=env)
    manage(
        "seed_demo_data",
        "--users",
        str(users),
        "--subscriptions",
        str(subscriptions),
        "-v0",
        "--database-url",
        url(SOURCE),
        env=env,
    )
    psql("VACUUM ANALYZE", SOURCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the seeded source database")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "BACKUP_DIR": str(work / "backups"),
        "MIGRATION_LOG": str(work / "migration.log"),
        "DATABASE_URL": url(SOURCE),
    }
    t0 = time.perf_counter()
    prepare_source(args.users, args.subscriptions, env)
    size = psql("SELECT pg_size_pretty(pg_database_size(current_database()))", SOURCE)
    print(f"source ready in {time.perf_counter() - t0:.1f}s: {size}")
    results: dict[str, dict[str, float]] = {}

    def record(label: str, seconds: float, path: Path | None = None) -> None:
        size = path.stat().st_size if path and path.exists() else 0
        results[label] = {"seconds": round(seconds, 3), "bytes": size}
        print(f"{label:45s} {seconds:8.2f} s {size / 1e6:10.1f} MB", flush=True)

    plain = work / "plain.sql"
    record("pg_dump > file (plain)", median_of(args.runs, lambda: sh(["pg_dump", "-f", str(plain), SOURCE])), plain)
    custom = work / "custom.dump"
    record("pg_dump -Fc (default gzip)", timed(lambda: sh(["pg_dump", "-Fc", "-f", str(custom), SOURCE])), custom)
    z1 = work / "z1.dump"
    record("pg_dump -Fc -Z1", median_of(args.runs, lambda: sh(["pg_dump", "-Fc", "-Z1", "-f", str(z1), SOURCE])), z1)
    zst = work / "z0.dump.zst"
    pipeline = f"pg_dump -Fc -Z0 {SOURCE} | zstd -1 -q -c > {zst}"
    record(
        "pg_dump -Fc -Z0 | zstd -1", median_of(args.runs, lambda: sh(["bash", "-o", "pipefail", "-c", pipeline])), zst
    )

    counter = 0

    def backup() -> None:
        nonlocal counter
        counter += 1
        manage("backup_db", "--name", f"bench{counter}", env=env)

    record("manage.py backup_db", median_of(args.runs, backup))
    manifest = json.loads((work / "backups" / f"bench{counter}.json").read_text())
    results["manage.py backup_db"]["bytes"] = manifest["size_bytes"]
    print(f"  backup_db file {manifest['size_bytes'] / 1e6:.1f} MB, format {manifest['format']}")

    # The same work without the Django start-up of a new process (the framework's own cost).
    in_process = (
        "import django, sys, time; django.setup(); from migrations_ops.backups import create_backup;"
        "t = time.perf_counter(); create_backup(name=sys.argv[1]); print(time.perf_counter() - t)"
    )

    def backup_in_process() -> float:
        nonlocal counter
        counter += 1
        argv = [sys.executable, "-c", in_process, f"bench{counter}"]
        out = sh(argv, env=env, cwd=ROOT, capture_output=True, text=True)
        return float(out.stdout.strip().splitlines()[-1])

    record("create_backup() in-process", statistics.median(backup_in_process() for _ in range(args.runs)))

    record(
        "pg_restore --single-transaction (fresh db)",
        median_of(
            args.runs,
            lambda: sh(["pg_restore", "--single-transaction", "--no-owner", "-d", "bench_restore_raw", str(custom)]),
            before=lambda: recreate("bench_restore_raw"),
        ),
    )
    record(
        "pg_restore --single-transaction (zstd file)",
        median_of(
            args.runs,
            lambda: sh(
                [
                    "bash",
                    "-o",
                    "pipefail",
                    "-c",
                    f"zstd -dcq {zst} | pg_restore --single-transaction --no-owner -d bench_restore_raw",
                ]
            ),
            before=lambda: recreate("bench_restore_raw"),
        ),
    )
    record(
        "manage.py restore_db --target (fresh db)",
        median_of(
            args.runs,
            lambda: manage(
                "restore_db", f"bench{counter}", "--noinput", "--target-database-url", url("bench_restore_ops"), env=env
            ),
            before=lambda: psql('DROP DATABASE IF EXISTS "bench_restore_ops" WITH (FORCE)'),
        ),
    )
    record(
        "manage.py restore_db in place (+safety backup)",
        timed(
            lambda: manage(
                "restore_db", f"bench{counter}", "--noinput", "--target-database-url", url("bench_restore_ops"), env=env
            )
        ),
    )

    code = (
        "import django, time; django.setup(); from migrations_ops.engines import get_engine;"
        "e = get_engine(); e.row_counts(); t = time.perf_counter(); e.row_counts(); print(time.perf_counter() - t)"
    )
    seconds = float(sh([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True).stdout)
    record("engine.row_counts() (warm)", seconds)

    plain_r = results["pg_dump > file (plain)"]
    ours = results["manage.py backup_db"]
    raw_restore = results["pg_restore --single-transaction (fresh db)"]["seconds"]
    ratios = {
        "backup_time_vs_plain": round(ours["seconds"] / plain_r["seconds"], 3),
        "backup_size_vs_plain": round(ours["bytes"] / plain_r["bytes"], 3),
        "backup_in_process_time_vs_plain": round(
            results["create_backup() in-process"]["seconds"] / plain_r["seconds"], 3
        ),
        "restore_time_vs_pg_restore_single_transaction": round(
            results["manage.py restore_db --target (fresh db)"]["seconds"] / raw_restore, 3
        ),
    }
    print(json.dumps(ratios, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results, "ratios": ratios}, indent=2))
    for db in ("bench_restore_raw", "bench_restore_ops"):
        psql(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    if not args.keep:
        psql(f'DROP DATABASE IF EXISTS "{SOURCE}" WITH (FORCE)')
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
