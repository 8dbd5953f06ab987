"""The step in a foreign-key check over random (UUID) keys when the parent's heap passes 256 MB.

    .venv/bin/python bench/uuid_antijoin.py                      # 1M, 2M, 4M and 8M rows
    .venv/bin/python bench/uuid_antijoin.py --scales 1m,4m --rounds 5

validate_db's foreign-key check (`COUNT(*) ... WHERE NOT EXISTS (parent)`) runs as a merge anti-join
of two index-only scans. An index-only scan looks up the visibility map for the heap page of every
index entry; one map page covers 256 MB of heap (2 bits per 8 kB page). Keys in random order visit
the heap in random order: while the heap fits in one map page every lookup finds the page it
already holds, past it nearly every lookup drops one map page and pins another (a "shared hit" in
EXPLAIN's buffer counts). The share of lookups that change page, 1 - 1/pages, is bounded, so the
cost per row steps up once, between one map page and a few (1M to 4M rows of about 190 B, as
`users` has), and is bounded from there on.

This script shows it on synthetic tables alone: per scale a parent (UUID key, rows padded to
the width of `users`) and a child with one reference per parent row, both written in random key
order, then the check's statement under EXPLAIN (ANALYZE, BUFFERS), the median of --rounds runs.
Control: the same parent rewritten in key order (the map pages are then visited in order).

Not a test. One scratch database (uuid_antijoin), dropped at the end.
"""

from __future__ import annotations

import argparse
import statistics

import _common
import run
from _common import admin, drop_database, url_of

DATABASE = "uuid_antijoin"
MAP_PAGE_SPAN = 8192 * 4 * 8192  # heap bytes one visibility-map page covers (2 bits per heap page)
# validate_db's statement for a foreign key (core_checks.pg_foreign_keys), with these tables' names
CHECK = (
    "SELECT COUNT(*) FROM {child} c WHERE c.parent_id IS NOT NULL"
    " AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE p.id = c.parent_id)"
)


def build(cursor, rows: int) -> None:
    cursor.execute("DROP TABLE IF EXISTS child, parent, parent_sorted")
    cursor.execute("CREATE TABLE parent (id uuid PRIMARY KEY, pad text NOT NULL)")
    # 150 characters: rows of about 190 bytes, as `users` has (190 MB at 1M rows)
    cursor.execute("INSERT INTO parent SELECT gen_random_uuid(), repeat('x', 150) FROM generate_series(1, %s)", [rows])
    cursor.execute("CREATE TABLE child (id bigserial PRIMARY KEY, parent_id uuid)")
    cursor.execute("INSERT INTO child (parent_id) SELECT id FROM parent")
    cursor.execute("CREATE INDEX child_parent_id ON child (parent_id)")
    cursor.execute("CREATE TABLE parent_sorted AS SELECT * FROM parent ORDER BY id")
    cursor.execute("ALTER TABLE parent_sorted ADD PRIMARY KEY (id)")
    # index-only scans need the visibility map set; the bench server runs without autovacuum
    for table in ("parent", "child", "parent_sorted"):
        cursor.execute(f"VACUUM ANALYZE {table}")


def node(plan: dict, wanted) -> dict | None:
    """The first node of the plan tree (depth first) that `wanted` accepts."""
    if wanted(plan):
        return plan
    for child in plan.get("Plans", []):
        found = node(child, wanted)
        if found:
            return found
    return None


def parent_scan(plan: dict) -> dict | None:
    """The scan of the parent (its buffer counts are summed over the parallel workers)."""
    return node(plan, lambda n: n.get("Relation Name", "").startswith("parent"))


def measure(cursor, parent: str, rows: int, rounds: int) -> dict:
    times, hits = [], []
    for _ in range(rounds + 1):  # the first run warms the cache and is not counted
        top = _common.explain(cursor, CHECK.format(child="child", parent=parent))
        scan = parent_scan(top["Plan"]) or {}
        times.append(top["Execution Time"])
        hits.append(scan.get("Shared Hit Blocks", 0) + scan.get("Shared Read Blocks", 0))
    times, hits = times[1:], hits[1:]
    return {
        "ms": round(statistics.median(times), 1),
        "ns_per_row": round(statistics.median(times) * 1e6 / rows, 1),
        "parent_buffers_per_row": round(statistics.median(hits) / rows, 3),
        "plan": " ".join(
            (join.get("Node Type", ""), join.get("Join Type", ""))
            if (join := node(top["Plan"], lambda n: "Join" in n["Node Type"]))
            else ()
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1m,2m,4m,8m")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--planner",
        action="store_true",
        help="let the planner choose the join (default: the merge anti-join of the seeded tables' check)",
    )
    parser.add_argument("--server", default=_common.BASE_URL, help="PostgreSQL server URL, without a database name")
    args = parser.parse_args()
    _common.use_server(args.server.rstrip("/"))
    scales = sorted(run.parse_scale(text) for text in args.scales.split(","))
    drop_database(DATABASE)
    admin(f'CREATE DATABASE "{DATABASE}"')
    connection = _common.connect(url_of(DATABASE))  # autocommit: VACUUM runs outside a transaction
    if not args.planner:
        # On these narrow synthetic children the planner hashes; on the seeded tables (users,
        # subscriptions, payment_intents) it merges two index-only scans, which is what is measured.
        with connection.cursor() as cursor:
            cursor.execute("SET enable_hashjoin = off")
    print(
        f"{'rows':>6} {'heap MB':>8} {'map pages':>9}  {'random order: ms':>16} {'ns/row':>7} {'buffers/row':>11}"
        f"  {'key order: ms':>13} {'ns/row':>7} {'buffers/row':>11}"
    )
    try:
        with connection.cursor() as cursor:
            for rows in scales:
                build(cursor, rows)
                cursor.execute("SELECT pg_relation_size('parent')")
                heap = cursor.fetchone()[0]
                shuffled = measure(cursor, "parent", rows, args.rounds)
                ordered = measure(cursor, "parent_sorted", rows, args.rounds)
                print(
                    f"{run.scale_name(rows):>6} {heap / 2**20:8.0f} {-(-heap // MAP_PAGE_SPAN):9d}"
                    f"  {shuffled['ms']:16.1f} {shuffled['ns_per_row']:7.1f} {shuffled['parent_buffers_per_row']:11.3f}"
                    f"  {ordered['ms']:13.1f} {ordered['ns_per_row']:7.1f} {ordered['parent_buffers_per_row']:11.3f}"
                    f"  ({shuffled['plan']})",
                    flush=True,
                )
    finally:
        connection.close()
        drop_database(DATABASE)


if __name__ == "__main__":
    main()
