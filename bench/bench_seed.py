"""Measure seed_demo_data on PostgreSQL at the head and at the baseline (a measurement, not a test).

Creates a scratch database per state, migrates it (fully, or to accounts 0001 + billing 0001),
runs `manage.py seed_demo_data` in a subprocess, prints its summary and wall time, and drops the
database. Usage:

    .venv/bin/python bench/bench_seed.py [--users 1000000] [--subscriptions 1000000]
        [--payment-intents N] [--states head,baseline] [--server postgres://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import re
import uuid

from _common import BASE_URL, execute, manage_argv, manage_output, run_measured

MIGRATE = {"head": [["migrate"]], "baseline": [["migrate", "accounts", "0001"], ["migrate", "billing", "0001"]]}


def prepare(url: str, state: str) -> None:
    """Migrate an empty database to `state` (head or baseline)."""
    for step in MIGRATE[state]:
        manage_output(url, *step, "--noinput", "-v0")


def seed(url: str, options: list[str]) -> dict:
    """`seed_demo_data <options>` on a prepared database: wall time, CPU, peak memory, the summary
    line, the rows it wrote per table and in all, and rows per second of the command's wall time."""
    run = run_measured(manage_argv(url, "seed_demo_data", *options))
    lines = run.pop("stdout").strip().splitlines()
    run.pop("stderr")
    summary = lines[-1] if lines else ""
    counts = {table: int(count.replace(",", "")) for table, count in re.findall(r"(\w+)=([\d,]+)", summary)}
    rows = sum(counts.values())
    return {**run, "summary": summary, "tables": counts, "rows": rows, "rows_per_s": round(rows / run["wall_s"])}


def bench(server: str, state: str, options: list[str]) -> None:
    name = f"seedbench_{state}_{uuid.uuid4().hex[:6]}"
    url = f"{server}/{name}"
    execute(f"{server}/postgres", f'CREATE DATABASE "{name}"')
    try:
        prepare(url, state)
        result = seed(url, options)
        print(f"[{state}] {result['summary']}")
        print(f"[{state}] wall time including process start: {result['wall_s']:.1f}s, {result['rows_per_s']:,} rows/s")
    finally:
        execute(f"{server}/postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=BASE_URL, help="PostgreSQL server URL (default: of BENCH_ADMIN_URL)")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--payment-intents", type=int, default=None)
    parser.add_argument("--states", default="baseline,head")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    options = ["--users", str(args.users), "--subscriptions", str(args.subscriptions), "--seed", str(args.seed)]
    if args.payment_intents is not None:
        options += ["--payment-intents", str(args.payment_intents)]
    for state in args.states.split(","):
        bench(args.server, state, options)


if __name__ == "__main__":
    main()
