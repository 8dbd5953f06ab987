"""Measure seed_demo_data on PostgreSQL at the head and at the baseline (a measurement, not a test).

Creates a scratch database per state, migrates it (fully, or to accounts 0001 + billing 0001),
runs `manage.py seed_demo_data` in a subprocess, prints its summary and wall time, and drops the
database. Usage:

    .venv/bin/python bench/bench_seed.py [--users 1000000] [--subscriptions 1000000]
        [--payment-intents N] [--states head,baseline] [--server postgres://postgres@127.0.0.1:5432]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MIGRATE = {"head": [["migrate"]], "baseline": [["migrate", "accounts", "0001"], ["migrate", "billing", "0001"]]}


def manage(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url}
    command = [sys.executable, "manage.py", *args]
    return subprocess.run(command, cwd=ROOT, env=env, check=True, capture_output=True, text=True)


def psql(server: str, sql: str) -> None:
    subprocess.run(["psql", f"{server}/postgres", "-qAtc", sql], check=True)


def bench(server: str, state: str, options: list[str]) -> None:
    name = f"seedbench_{state}_{uuid.uuid4().hex[:6]}"
    url = f"{server}/{name}"
    psql(server, f'CREATE DATABASE "{name}"')
    try:
        for step in MIGRATE[state]:
            manage(url, *step, "--noinput", "-v0")
        started = time.perf_counter()
        result = manage(url, "seed_demo_data", *options)
        wall = time.perf_counter() - started
        print(f"[{state}] {result.stdout.strip().splitlines()[-1]}")
        print(f"[{state}] wall time including process start: {wall:.1f}s")
    finally:
        psql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="postgres://postgres@127.0.0.1:5432")
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
