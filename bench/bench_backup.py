"""Benchmark: backup_db / restore_db against the raw PostgreSQL tools on a seeded database.

Not a test. Usage (PostgreSQL server of BENCH_ADMIN_URL reachable, client tools on PATH):

    .venv/bin/python bench/bench_backup.py [--subscriptions 1000000] [--users 200000] [--runs 3] [--keep]

Creates `bench_backup_src` (migrated and seeded with `seed_demo_data`), then measures, median of
--runs: plain `pg_dump > file` (the runbook), `pg_dump -Fc` (default gzip, one run), candidate
formats, `manage.py backup_db`, `pg_restore --single-transaction` into a fresh database and
`manage.py restore_db --target-database-url` into a fresh database; and `engine.row_counts()`.
Prints a table and the ratios the issue sets targets for; --json writes them as JSON too.
The commands are functions (argv builders) that bench/run.py measures side by side too.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import admin, copy_database, drop_database, manage, manage_argv, run_measured, shell, url_of

SOURCE = "bench_backup_src"


# --- the commands compared (argv lists; run them with _common.run_measured) ---
def pg_dump_plain(url: str, path: Path) -> list[str]:
    """The runbook's backup: plain SQL to a file."""
    return ["pg_dump", "-f", str(path), "-d", url]


def pg_dump_custom(url: str, path: Path, *options: str) -> list[str]:
    """`pg_dump -Fc` (default gzip unless options say otherwise)."""
    return ["pg_dump", "-Fc", *options, "-f", str(path), "-d", url]


def pg_dump_zstd(url: str, path: Path) -> list[str]:
    """The raw pipeline backup_db runs: an uncompressed custom dump through `zstd -1`."""
    return shell(f"pg_dump -Fc -Z0 -d '{url}' | zstd -1 -q -c > '{path}'")


def pg_restore_fresh(url: str, name: str, dump: Path) -> list[str]:
    """Create the database, then `pg_restore --single-transaction` into it (what restoring by hand takes)."""
    return shell(
        f"createdb --maintenance-db='{url.rsplit('/', 1)[0]}/postgres' '{name}' && "
        f"pg_restore --single-transaction --no-owner -d '{url}' '{dump}'"
    )


def pg_restore_over(url: str, dump: Path) -> list[str]:
    """`pg_restore --clean --if-exists --single-transaction` over the existing database."""
    return ["pg_restore", "--clean", "--if-exists", "--single-transaction", "--no-owner", "-d", url, str(dump)]


def backup_db(url: str, name: str) -> list[str]:
    return manage_argv(url, "backup_db", "--name", name, "-v0")


def restore_db(url: str, name: str, target_url: str | None = None) -> list[str]:
    target = ["--target-database-url", target_url] if target_url else []
    return manage_argv(url, "restore_db", name, "--noinput", "-v0", *target)


def verify_restore_test(url: str, name: str) -> list[str]:
    return manage_argv(url, "verify_backup", name, "--restore-test", "-v0")


def manifest_of(backup_dir: Path, name: str) -> dict:
    return json.loads((backup_dir / f"{name}.json").read_text())


def median_of(runs: int, argv_of, env: dict, before=None) -> float:
    times = []
    for run in range(runs):
        if before:
            before()
        times.append(run_measured(argv_of(run), env=env)["wall_s"])
    return statistics.median(times)


def prepare_source(url: str, users: int, subscriptions: int) -> None:
    admin(f'CREATE DATABASE "{SOURCE}"')
    manage(url, "migrate", "--noinput", "-v0")
    manage(url, "seed_demo_data", "--users", str(users), "--subscriptions", str(subscriptions), "-v0")
    run_measured(["psql", "-X", "-q", "-d", url, "-c", "VACUUM ANALYZE"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the seeded source database")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-backup-"))
    backups = work / "backups"
    env = {
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "BACKUP_DIR": str(backups),
        "MIGRATION_LOG": str(work / "migration.log"),
    }
    source = url_of(SOURCE)
    t0 = time.monotonic()
    drop_database(SOURCE)
    prepare_source(source, args.users, args.subscriptions)
    print(f"source ready in {time.monotonic() - t0:.1f}s")
    results: dict[str, dict[str, float]] = {}

    def record(label: str, seconds: float, size: int = 0) -> None:
        results[label] = {"seconds": round(seconds, 3), "bytes": size}
        print(f"{label:45s} {seconds:8.2f} s {size / 1e6:10.1f} MB", flush=True)

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    plain, custom, z1, zst = work / "plain.sql", work / "custom.dump", work / "z1.dump", work / "z0.dump.zst"
    record("pg_dump > file (plain)", median_of(args.runs, lambda _: pg_dump_plain(source, plain), env), size(plain))
    record("pg_dump -Fc (default gzip)", median_of(1, lambda _: pg_dump_custom(source, custom), env), size(custom))
    record("pg_dump -Fc -Z1", median_of(args.runs, lambda _: pg_dump_custom(source, z1, "-Z1"), env), size(z1))
    record("pg_dump -Fc -Z0 | zstd -1", median_of(args.runs, lambda _: pg_dump_zstd(source, zst), env), size(zst))
    record("manage.py backup_db", median_of(args.runs, lambda run: backup_db(source, f"bench{run}"), env))
    manifest = manifest_of(backups, "bench0")
    results["manage.py backup_db"]["bytes"] = manifest["size_bytes"]
    print(f"  backup_db file {manifest['size_bytes'] / 1e6:.1f} MB, format {manifest['format']}")

    # The same work without the Django start-up of a new process (the framework's own cost).
    in_process = (
        "import django, sys, time; django.setup(); from migrations_ops.backups import create_backup;"
        "t = time.monotonic(); create_backup(name=sys.argv[1]); print(time.monotonic() - t)"
    )
    seconds = [
        float(
            run_measured([sys.executable, "-c", in_process, f"inproc{run}"], env={**env, "DATABASE_URL": source})[
                "stdout"
            ]
            .strip()
            .splitlines()[-1]
        )
        for run in range(args.runs)
    ]
    record("create_backup() in-process", statistics.median(seconds))

    raw_target, ours_target = "bench_restore_raw", "bench_restore_ops"
    record(
        "pg_restore --single-transaction (fresh db)",
        median_of(
            args.runs,
            lambda _: pg_restore_fresh(url_of(raw_target), raw_target, custom),
            env,
            before=lambda: drop_database(raw_target),
        ),
    )
    record(
        "manage.py restore_db --target (fresh db)",
        median_of(
            args.runs,
            lambda _: restore_db(source, "bench0", url_of(ours_target)),
            env,
            before=lambda: drop_database(ours_target),
        ),
    )
    copy_database(ours_target, SOURCE)
    record(
        "manage.py restore_db in place (+safety backup)",
        median_of(1, lambda _: restore_db(url_of(ours_target), "bench0"), env),
    )

    code = (
        "import django, time; django.setup(); from migrations_ops.engines import get_engine;"
        "e = get_engine(); e.row_counts(); t = time.monotonic(); e.row_counts(); print(time.monotonic() - t)"
    )
    done = run_measured([sys.executable, "-c", code], env={**env, "DATABASE_URL": source})
    record("engine.row_counts() (warm)", float(done["stdout"].strip().splitlines()[-1]))

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
    for db in (raw_target, ours_target):
        drop_database(db)
    if not args.keep:
        drop_database(SOURCE)
    subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
