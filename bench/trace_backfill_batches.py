"""Every backfill batch of one `safe_migrate --online` expand: operation, pages, seconds.

    .venv/bin/python bench/trace_backfill_batches.py postgres://postgres@127.0.0.1:5432/DB [app_label]

Runs the expand in this process with bench.expand_settings (default app: expand_release, which
must be at 0001 in DB) and wraps OnlineStrategy._batch to record each batch's duration. It records
and changes nothing else. This is how bench_expand_contract.py's notes traced the old release's waits to
batches far over MIGRATION_ONLINE_BATCH_TARGET.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    url, app_label = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "expand_release")
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.expand_settings")
    os.environ["DATABASE_URL"] = url
    os.environ["BACKUP_DIR"] = tempfile.mkdtemp(prefix="trace-batches-")
    os.environ["MIGRATION_LOG"] = os.path.join(tempfile.mkdtemp(), "migration.log")
    import django

    django.setup()
    from migrations_ops.api import safe_migrate
    from migrations_ops.options import SafeMigrateOptions
    from migrations_ops.strategies import online

    original = online.OnlineStrategy._batch
    batches: list[tuple] = []

    def traced(self, run, revision, index, statements, predicate):
        elapsed, changed = original(self, run, revision, index, statements, predicate)
        current = run.state.current
        batches.append((current.get("operation"), current.get("block"), current.get("span"), predicate, elapsed))
        return elapsed, changed

    online.OnlineStrategy._batch = traced
    summary = safe_migrate("default", SafeMigrateOptions(online=True, app_label=app_label))
    print(f"status {summary.status} {summary.error or ''}")
    for operation in sorted({batch[0] for batch in batches}, key=str):
        mine = [batch for batch in batches if batch[0] == operation]
        over = sum(1 for batch in mine if batch[4] > 0.2)
        print(f"operation {operation}: {len(mine)} batches, longest {max(b[4] for b in mine):.3f} s, {over} over 0.2 s")
        for _, block, span, predicate, elapsed in mine:
            what = "catch-up over the whole table" if predicate == "TRUE" else f"pages {block - span}-{block}"
            print(f"    {what} ({span} pages): {elapsed:.3f} s")


if __name__ == "__main__":
    main()
