"""Where validate_db's time goes on the server: EXPLAIN (ANALYZE, BUFFERS) of every statement it sends.

    .venv/bin/python bench/explain_validate.py benchrun_head                      # one database
    .venv/bin/python bench/explain_validate.py bench_1m benchrun_head             # growth from one to the other
    .venv/bin/python bench/explain_validate.py benchrun_head --work-mem 64MB      # with another work_mem

The statements are captured from a real validation run (bench_validate.ValidationWorker, the same
capture run.py replays through psql); those under --min-ms (5 ms: the catalog lookups) are summed
in one line. For each data statement: execution time, shared buffers hit and read, temporary blocks written (a sort or
hash that spilled past work_mem), and the plan nodes that spilled. With two databases, each
statement's growth is set against the growth of the data (rows of `subscriptions`): growth above
the data's factor is what makes the whole validation grow faster than linearly.

Not a test. Databases are names on the bench server (BENCH_ADMIN_URL) and must be migrated to the head.
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import _common
from bench_validate import ValidationWorker


def capture(url: str) -> list[str]:
    worker = ValidationWorker(url)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            script = Path(tmp) / "checks.sql"
            worker.capture(script)
            text = script.read_text()
    finally:
        worker.close()
    # EXPLAIN takes queries only; the checks send nothing else that reads data
    return [statement for statement in text.split(";\n") if statement.lstrip().upper().startswith(("SELECT", "WITH"))]


def spills(plan: dict, found: list[str]) -> list[str]:
    """Plan nodes that wrote temporary blocks, with what they did (sort method, hash batches)."""
    written = plan.get("Temp Written Blocks", 0) - sum(
        child.get("Temp Written Blocks", 0) for child in plan.get("Plans", [])
    )
    if written > 0:
        what = plan["Node Type"]
        if plan.get("Sort Method"):
            what += f" ({plan['Sort Method']}, {plan.get('Sort Space Used', '?')} kB {plan.get('Sort Space Type', '')})"
        if plan.get("Hash Batches", 1) > 1:
            what += f" ({plan['Hash Batches']} batches)"
        if plan.get("HashAgg Batches", 0) > 1:
            what += f" ({plan['HashAgg Batches']} batches)"
        found.append(f"{what}: {written * 8 // 1024} MB temp")
    for child in plan.get("Plans", []):
        spills(child, found)
    return found


def explain(url: str, statements: list[str], work_mem: str | None) -> list[dict]:
    connection = _common.connect(url)
    results = []
    try:
        with connection.cursor() as cursor:
            if work_mem:
                cursor.execute("SET work_mem = %s", [work_mem])
            cursor.execute("SELECT COUNT(*) FROM subscriptions")
            subscriptions = cursor.fetchone()[0]
            for statement in statements:
                top = _common.explain(cursor, statement)
                plan = top["Plan"]
                results.append(
                    {
                        "statement": statement,
                        "ms": top["Execution Time"] + top.get("Planning Time", 0),
                        "hit_mb": plan.get("Shared Hit Blocks", 0) * 8 / 1024,
                        "read_mb": plan.get("Shared Read Blocks", 0) * 8 / 1024,
                        "temp_mb": plan.get("Temp Written Blocks", 0) * 8 / 1024,
                        "spills": spills(plan, []),
                        "subscriptions": subscriptions,
                    }
                )
    finally:
        connection.close()
    return results


def label(statement: str) -> str:
    text = re.sub(r"\s+", " ", statement).strip()
    return text if len(text) <= 110 else text[:107] + "..."


def report(name: str, results: list[dict], small_ms: float) -> None:
    total = sum(result["ms"] for result in results)
    small = [result for result in results if result["ms"] < small_ms]
    print(f"\n{name}: {results[0]['subscriptions']:,} subscriptions, {len(results)} statements, {total / 1000:.2f} s")
    print(f"  {'ms':>9} {'hit MB':>8} {'read MB':>8} {'temp MB':>8}  statement")
    for result in sorted(results, key=lambda result: -result["ms"]):
        if result["ms"] < small_ms:
            continue
        print(
            f"  {result['ms']:9.1f} {result['hit_mb']:8.0f} {result['read_mb']:8.0f} {result['temp_mb']:8.0f}"
            f"  {label(result['statement'])}"
        )
        for spill in result["spills"]:
            print(f"  {'':36}  spilled: {spill}")
    print(f"  {sum(r['ms'] for r in small):9.1f} {'':26}  {len(small)} statements under {small_ms:g} ms each")


def growth(small: list[dict], big: list[dict], small_ms: float) -> None:
    factor = big[0]["subscriptions"] / small[0]["subscriptions"]
    print(f"\ngrowth (the data grew x{factor:.2f}); statements matched by their text:")
    by_text = {result["statement"]: result for result in small}
    pairs = [
        (old if old["statement"] == new["statement"] else by_text.get(new["statement"]), new)
        for old, new in zip(small, big, strict=False)
    ]  # the same checks send the same statements in the same order; the text decides where not
    for old, result in sorted(pairs, key=lambda pair: -pair[1]["ms"]):
        if not old or result["ms"] < small_ms:
            continue
        ratio = result["ms"] / max(old["ms"], 0.001)
        flag = "  <- grew faster than the data" if ratio > factor * 1.05 else ""
        print(f"  x{ratio:5.2f} {old['ms']:9.1f} -> {result['ms']:9.1f} ms  {label(result['statement'])}{flag}")
    total_small, total_big = sum(r["ms"] for r in small), sum(r["ms"] for r in big)
    print(f"  x{total_big / total_small:5.2f} {total_small:9.1f} -> {total_big:9.1f} ms  all statements")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("databases", nargs="+", help="one database, or two (smaller first) to compare")
    parser.add_argument("--work-mem", help="SET work_mem for the session (default: the server's)")
    parser.add_argument("--min-ms", type=float, default=5.0, help="statements faster than this are summed in one line")
    parser.add_argument("--rounds", type=int, default=2, help="runs per database, the last one reported (warm)")
    args = parser.parse_args()
    measured = []
    for name in args.databases:
        url = _common.url_of(name)
        statements = capture(url)
        for _ in range(args.rounds):
            results = explain(url, statements, args.work_mem)
        report(name + (f" (work_mem {args.work_mem})" if args.work_mem else ""), results, args.min_ms)
        measured.append(results)
    if len(measured) == 2:
        growth(*measured, args.min_ms)


if __name__ == "__main__":
    main()
