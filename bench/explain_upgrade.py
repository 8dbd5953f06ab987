"""Where the upgrade's time goes on the server: every statement plain `migrate` sends, timed, with
EXPLAIN (ANALYZE, BUFFERS, WAL) for the data statements.

    .venv/bin/python bench/explain_upgrade.py bench_1m                    # one baseline database
    .venv/bin/python bench/explain_upgrade.py prof_1m prof_4m             # growth from one to the other
    .venv/bin/python bench/explain_upgrade.py prof_4m --json out.json     # the figures, for a comparison

Each named database must be at the baseline with seeded data (`run.py --keep` leaves benchrun_baseline;
bench_seed.prepare + seed make one). It is not touched: the upgrade runs on a copy made with
CREATE DATABASE ... TEMPLATE, dropped afterwards. The upgrade is Django's own `migrate` in this process,
with an execute wrapper that (1) sends each INSERT/UPDATE/DELETE as EXPLAIN (ANALYZE, BUFFERS, WAL,
FORMAT JSON) <statement>, which runs it as the migration would, (2) times every statement and reads
the WAL written across it (pg_current_wal_insert_lsn, which moves in real time, unlike pg_stat_*
counters, which a backend flushes only at the end of its transaction).

Printed per statement over --min-ms: seconds, WAL written, and for a data statement the rows,
shared buffers hit / read / dirtied / written by the backend itself (a backend that reads and
writes about a block per row works past shared_buffers), and temporary blocks (a hash or sort
past work_mem). WAL far above the data written is full-page images after checkpoints (past
max_wal_size). With two databases, each statement's growth is set against the growth of the data.
Run it once with the server's settings and once with others to see what they cost: the figures in
bench/README.md ("explain_upgrade.py: why the upgrades grew faster than the data") were made that way.

Not a test. Databases are names on the bench server (BENCH_ADMIN_URL).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import _common

ROOT = Path(__file__).resolve().parent.parent
DML = ("INSERT", "UPDATE", "DELETE", "WITH")


def profile_here(url: str) -> list[dict]:
    """Run `migrate` on `url` in this process (Django set up for it), profiling each statement."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    found: list[dict] = []

    def wal_lsn(raw_connection) -> int:
        # a cursor of its own: the statement's cursor may still hold rows its caller will fetch
        with raw_connection.cursor() as cursor:
            cursor.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
            return int(cursor.fetchone()[0])

    def wrapper(execute, sql, params, many, context):
        cursor = context["cursor"]
        raw = context["connection"].connection
        kind = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        before = wal_lsn(raw)
        started = time.monotonic()
        entry: dict = {"sql": " ".join(sql.split())[:160], "kind": kind}
        # the migrations' own SQL only: ORM statements (the recorder's INSERT ... RETURNING) want their rows
        if kind in DML and not many and not params and "RETURNING" not in sql.upper():
            result = execute("EXPLAIN (ANALYZE, BUFFERS, WAL, FORMAT JSON) " + sql, params, many, context)
            plan = cursor.fetchone()[0][0]
            top = plan["Plan"]
            entry |= {
                "rows": top.get("Plans", [{}])[0].get("Actual Rows", top.get("Actual Rows")),
                "hit": top.get("Shared Hit Blocks", 0),
                "read": top.get("Shared Read Blocks", 0),
                "dirtied": top.get("Shared Dirtied Blocks", 0),
                "written": top.get("Shared Written Blocks", 0),
                "temp_written": top.get("Temp Written Blocks", 0),
            }
        else:
            result = execute(sql, params, many, context)
        entry["s"] = time.monotonic() - started
        entry["wal_mb"] = (wal_lsn(raw) - before) / 2**20
        found.append(entry)
        return result

    with connection.execute_wrapper(wrapper):
        call_command("migrate", "--noinput", verbosity=0)
    return found


def profile(database: str) -> dict:
    """Copy `database`, run the profiled upgrade on the copy in a child process, drop the copy."""
    copy = f"{database}_explain_upgrade"
    _common.copy_database(copy, database)
    try:
        with _common.connect(_common.url_of(copy)) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM subscriptions")
            rows = cursor.fetchone()[0]
        conn.close()
        started = time.monotonic()
        out = subprocess.run(
            [sys.executable, __file__, "--child", _common.url_of(copy)],
            check=True,
            stdout=subprocess.PIPE,
            text=True,
        ).stdout
        wall = time.monotonic() - started
    finally:
        _common.drop_database(copy)
    return {"database": database, "subscriptions": rows, "wall_s": wall, "statements": json.loads(out)}


def show(result: dict, min_ms: float) -> None:
    statements = result["statements"]
    total = sum(s["s"] for s in statements)
    small = [s for s in statements if s["s"] * 1000 < min_ms]
    print(
        f"\n{result['database']}: {result['subscriptions']:,} subscriptions, migrate {result['wall_s']:.1f} s wall,"
        f" {total:.1f} s in {len(statements)} statements, WAL {sum(s['wal_mb'] for s in statements):,.0f} MB"
    )
    for s in statements:
        if s["s"] * 1000 < min_ms:
            continue
        line = f"  {s['s']:8.2f} s  WAL {s['wal_mb']:7.0f} MB  {s['sql'][:90]}"
        if "hit" in s:
            line += (
                f"\n{'':13}rows {s['rows']:,}  hit {s['hit']:,}  read {s['read']:,}  dirtied {s['dirtied']:,}"
                f"  written by backend {s['written']:,}  temp {s['temp_written']:,}"
            )
        print(line)
    print(f"  {sum(s['s'] for s in small):8.2f} s  in {len(small)} statements under {min_ms:g} ms each")


def growth(small: dict, big: dict, min_ms: float) -> None:
    factor = big["subscriptions"] / small["subscriptions"]
    server = [sum(s["s"] for s in result["statements"]) for result in (small, big)]
    print(
        f"\ngrowth {small['database']} -> {big['database']} (data x{factor:.2f}): the statements"
        f" {server[0]:.1f} -> {server[1]:.1f} s, x{server[1] / server[0]:.2f}"
        f" (wall, with Django's start-up: x{big['wall_s'] / small['wall_s']:.2f})"
    )
    for a, b in zip(small["statements"], big["statements"], strict=True):
        if a["sql"] != b["sql"] or max(a["s"], b["s"]) * 1000 < min_ms:
            continue
        flag = "  <- faster than the data" if b["s"] / max(a["s"], 1e-9) > factor * 1.25 else ""
        print(f"  x{b['s'] / max(a['s'], 1e-9):6.2f}  {a['s']:7.2f} -> {b['s']:7.2f} s  {a['sql'][:80]}{flag}")


def trimmed(result: dict) -> dict:
    """The figures to keep: totals, statements of 100 ms or more, the rest summed (as explain-upgrade.json)."""
    statements = result["statements"]
    small = [s for s in statements if s["s"] < 0.1]
    return {
        **result,
        "statements_total_s": round(sum(s["s"] for s in statements), 3),
        "wal_total_mb": round(sum(s["wal_mb"] for s in statements), 1),
        "statements": [s for s in statements if s["s"] >= 0.1],
        "under_100ms": {"count": len(small), "s": round(sum(s["s"] for s in small), 3)},
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(profile_here(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("databases", nargs="+", help="one or two seeded baseline databases")
    parser.add_argument("--min-ms", type=float, default=200, help="statements under this are summed in one line")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    results = [profile(name) for name in args.databases]
    for result in results:
        show(result, args.min_ms)
    if len(results) == 2:
        growth(*results, args.min_ms)
    if args.json:
        Path(args.json).write_text(json.dumps([trimmed(result) for result in results], indent=1))


if __name__ == "__main__":
    main()
