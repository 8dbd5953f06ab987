"""Measure reprice_subscriptions and rollup_analytics on PostgreSQL at scale (a measurement, not a test).

Creates a scratch database, migrates it, seeds it with `seed_demo_data` (or uses --database-url of an
already seeded database, left in place), then times, each as a `manage.py` subprocess:
reprice (a no-op), a price rise on every config, reprice --dry-run, reprice, rollup of one day, rollup
of a year of days, and validate_db. Drops the scratch database at the end. Usage:

    .venv/bin/python bench/bench_billing.py [--users 1000000] [--subscriptions 1000000]
        [--payment-intents 2000000] [--server postgres://postgres@127.0.0.1:5432] [--database-url URL]
"""

from __future__ import annotations

import argparse
import datetime
import uuid

from _common import BASE_URL, execute, manage_output


def timed(label: str, url: str, *args: str) -> None:
    line, seconds = manage_output(url, *args)
    print(f"{label:<34} {seconds:7.1f}s  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default=BASE_URL, help="PostgreSQL server URL (default: of BENCH_ADMIN_URL)")
    parser.add_argument("--database-url", help="an already seeded database to measure (kept)")
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--subscriptions", type=int, default=1_000_000)
    parser.add_argument("--payment-intents", type=int, default=2_000_000)
    args = parser.parse_args()
    scratch = None
    url = args.database_url
    if url is None:
        scratch = f"billbench_{uuid.uuid4().hex[:6]}"
        url = f"{args.server}/{scratch}"
        execute(f"{args.server}/postgres", f'CREATE DATABASE "{scratch}"')
    try:
        if scratch:
            manage_output(url, "migrate", "--noinput", "-v0")
            timed(
                "seed_demo_data",
                url,
                "seed_demo_data",
                *("--users", str(args.users), "--subscriptions", str(args.subscriptions)),
                *("--payment-intents", str(args.payment_intents), "--seed", "1"),
            )
        execute(url, "ANALYZE")
        timed("reprice (nothing changed)", url, "reprice_subscriptions")
        execute(url, "UPDATE pricing_configs SET base_price = base_price + 0.50")
        timed("reprice --dry-run (all change)", url, "reprice_subscriptions", "--dry-run")
        timed("reprice (all change)", url, "reprice_subscriptions")
        timed("reprice --plan basic (no-op)", url, "reprice_subscriptions", "--plan", "basic")
        timed("rollup_analytics --date", url, "rollup_analytics", "--date", "2025-12-15")
        since = (datetime.date.today() - datetime.timedelta(days=365)).isoformat()
        timed("rollup_analytics --since (365 d)", url, "rollup_analytics", "--since", since)
        timed("validate_db", url, "validate_db")
    finally:
        if scratch:
            execute(f"{args.server}/postgres", f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')


if __name__ == "__main__":
    main()
