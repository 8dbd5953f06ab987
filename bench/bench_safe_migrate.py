"""Benchmark: safe_migrate against the runbook's procedure (plain pg_dump + plain migrate).

A database at the baseline migration with N users and N subscriptions (default 1M) is copied
twice per round (CREATE DATABASE ... TEMPLATE); one copy is upgraded to the head by the
runbook's procedure, the other by `safe_migrate --noinput`. During each run a probe thread with
its own connection runs a SELECT and a single-row UPDATE on `subscriptions` every 50 ms and
records how long each took: the longest is the time the application was blocked.

    .venv/bin/python bench/bench_safe_migrate.py --rows 1000000 --rounds 3

Needs the PostgreSQL server of BENCH_ADMIN_URL (default postgres://postgres@127.0.0.1:5432/postgres).
Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg2
from _common import BASE_URL, admin, manage


class Probe(threading.Thread):
    """SELECT + single-row UPDATE on subscriptions every 50 ms; records each round's latency."""

    def __init__(self, url: str, max_id: int) -> None:
        super().__init__(daemon=True)
        self.url = url.replace("postgres://", "postgresql://")
        self.max_id = max_id
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        conn = psycopg2.connect(self.url)
        conn.autocommit = True
        rng = random.Random(7)
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                with conn.cursor() as cursor:
                    row_id = rng.randint(1, self.max_id)
                    cursor.execute("SELECT id, status FROM subscriptions WHERE id = %s", [row_id])
                    cursor.fetchall()
                    cursor.execute("UPDATE subscriptions SET updated_at = now() WHERE id = %s", [row_id])
            except psycopg2.Error as exc:
                self.errors.append(str(exc).splitlines()[0])
            self.latencies.append(time.monotonic() - started)
            time.sleep(0.05)
        conn.close()


def timed_with_probe(url: str, rows: int, work) -> tuple[float, float, int]:
    probe = Probe(url, rows)
    probe.start()
    time.sleep(0.3)
    started = time.monotonic()
    work()
    elapsed = time.monotonic() - started
    probe.stop.set()
    probe.join()
    return elapsed, max(probe.latencies or [0.0]), len(probe.errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()

    template = "bench_sm_template"
    admin(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")
    admin(f"CREATE DATABASE {template}")
    template_url = f"{BASE_URL}/{template}"
    for app, target in [
        ("contenttypes", None),
        ("auth", None),
        ("accounts", "0001"),
        ("billing", "0001"),
        ("admin", None),
        ("sessions", None),
        ("migrations_ops", None),
    ]:
        manage(template_url, "migrate", app, *([target] if target else []), "--noinput", "-v0")
    seed_s = manage(
        template_url,
        "seed_demo_data",
        "--users",
        str(args.rows),
        "--subscriptions",
        str(args.rows),
        "--seed",
        "1",
        "-v0",
    )
    print(f"seeded baseline with {args.rows} users and {args.rows} subscriptions in {seed_s:.1f}s")

    runbook, safe, runbook_block, safe_block = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            for kind in ("runbook", "safe") if round_no % 2 == 0 else ("safe", "runbook"):
                name = f"bench_sm_{kind}"
                admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
                admin(f"CREATE DATABASE {name} TEMPLATE {template}")
                url = f"{BASE_URL}/{name}"
                if kind == "runbook":
                    dump = Path(tmp) / "runbook.sql"

                    def work(url=url, dump=dump):
                        with open(dump, "wb") as handle:
                            subprocess.run(
                                ["pg_dump", "-d", url.replace("postgres://", "postgresql://")],
                                stdout=handle,
                                check=True,
                            )
                        manage(url, "migrate", "--noinput", "-v0")

                    elapsed, blocked, errors = timed_with_probe(url, args.rows, work)
                    runbook.append(elapsed)
                    runbook_block.append(blocked)
                else:
                    env = {"BACKUP_DIR": str(Path(tmp) / "backups"), "MIGRATION_LOG": str(Path(tmp) / "log")}
                    elapsed, blocked, errors = timed_with_probe(
                        url,
                        args.rows,
                        lambda url=url, env=env: manage(url, "safe_migrate", "--noinput", "-v0", env=env),
                    )
                    safe.append(elapsed)
                    safe_block.append(blocked)
                print(
                    f"round {round_no + 1} {kind:8s} {elapsed:7.2f}s  longest probe wait {blocked:6.2f}s  "
                    f"probe errors {errors}"
                )
                admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin(f"DROP DATABASE IF EXISTS {template} WITH (FORCE)")

    r, s = statistics.median(runbook), statistics.median(safe)
    print(f"\nmedian runbook (pg_dump > .sql + migrate): {r:.2f}s; longest probe wait {max(runbook_block):.2f}s")
    print(f"median safe_migrate:                      {s:.2f}s; longest probe wait {max(safe_block):.2f}s")
    print(f"ratio safe_migrate / runbook: {s / r:.2f}x (target <= 1.30x)")
    print(f"runbook's planned downtime 120-300 s vs longest probe wait {max(safe_block):.2f}s")


if __name__ == "__main__":
    main()
