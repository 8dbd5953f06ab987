"""Will the server carry a whole-table backfill at full speed? Sizes against shared_buffers and max_wal_size.

A batched data migration (RunSQLBatched) rewrites every row of the table it walks, and the rows
get a new version each (not HOT: the pages are full), so every index of the table gets a second
entry per row. bench/explain_upgrade.py measured what that costs on a server left at PostgreSQL's
defaults (shared_buffers 128MB, max_wal_size 1GB), for billing 0003 (bench/README.md,
"explain_upgrade.py: why the upgrades grew faster than the data"): from 1M to 4M subscriptions
the backfill took x7 the time for x4 the rows, and the upgrade's statements x6.0 (x9-11 in
run.py's runs, on a slower disk). Two causes, each with its check:

- WAL: the backfill writes about 3.6x the size of the table and its indexes. Past max_wal_size
  the server checkpoints, and after each checkpoint the first change to a page logs the whole page
  again; an index filled in random key order (a UUID foreign key) is logged again and again, so
  the WAL grows with the square of the table: 26 GB instead of 2.7 GB at 4M rows.
- memory: once the table and its indexes (doubled) no longer fit shared_buffers, each random
  index insert reads a page and writes another back: 5M block reads at 4M rows, 87k with 2GB.

With both settings raised the same upgrade grew x4.06 from 1M to 4M rows. safe_migrate cannot
change them for one run (both are server-wide, shared_buffers needs a restart), so it says so
before it starts, with the values to set. The warnings never stop a run.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from migrations_ops.engines.base import DatabaseEngine, RewriteFacts
from migrations_ops.formatting import human_size
from migrations_ops.operations import RunSQLBatched

if TYPE_CHECKING:
    from migrations_ops.planning import MigrationPlan

# Measured 3.56x at 1M and 3.57x at 4M rows (billing 0003, with no checkpoint inside the backfill).
WAL_PER_BYTE_REWRITTEN = 3.6
# Every index gets a second entry per row during the rewrite.
INDEX_GROWTH = 2
GB = 1024**3
MB = 1024**2
SHARED_BUFFERS_STEP = 128 * MB


@dataclass(frozen=True)
class TableRewrite(RewriteFacts):
    """One table a backfill rewrites whole, with the server settings that bound the rewrite: the facts
    an engine reports (``DatabaseEngine.rewrite_facts``), and what they mean for the backfill."""

    @classmethod
    def of(cls, facts: RewriteFacts) -> TableRewrite:
        return cls(**asdict(facts))

    @property
    def wal_bytes(self) -> int:
        """The WAL the rewrite writes when no checkpoint falls inside it."""
        return int(WAL_PER_BYTE_REWRITTEN * (self.table_bytes + self.index_bytes))

    @property
    def max_wal_size_needed(self) -> int:
        """The server asks for a checkpoint once the WAL since the last one reaches about
        max_wal_size / (1 + checkpoint_completion_target): 3GB let one fall inside the 4M backfill
        (5.3 GB of WAL instead of 2.7 GB). Plus a gigabyte for the WAL written since the last
        checkpoint before the backfill starts (the upgrade's earlier statements wrote 1.9 GB at 4M);
        6GB, what this asks at 4M, was measured: 4.0 GB of WAL, the backfill 107 s against 105 s at 16GB.
        The headroom grows with the upgrade up to that gigabyte (the earlier statements' WAL is of the same
        tables): a small table's backfill asks nothing of a default server."""
        return int(self.wal_bytes * (1 + self.checkpoint_completion_target)) + min(GB, 2 * self.wal_bytes)

    @property
    def working_set_bytes(self) -> int:
        """What the rewrite keeps touching: the table's pages and its indexes, which double. The
        indexes alone were not enough: with 640MB of shared_buffers for 580 MB of doubled indexes the
        4M backfill still read 1.3M blocks (87k with 2GB); with the 1152MB this asks, 179k."""
        return self.table_bytes + INDEX_GROWTH * self.index_bytes

    def warnings(self) -> list[str]:
        """One line per setting too small for this rewrite, with the value that fits it."""
        found = []
        what = (
            f"the backfill of {self.table} ({self.rows:,} rows, {human_size(self.table_bytes)} "
            f"+ indexes {human_size(self.index_bytes)})"
        )
        if self.max_wal_size < self.max_wal_size_needed:
            needed = math.ceil(self.max_wal_size_needed / GB)
            found.append(
                f"{what} writes about {human_size(self.wal_bytes)} of WAL: with max_wal_size "
                f"{human_size(self.max_wal_size)} checkpoints fall inside it, and after each it logs every page it "
                f"changes again (measured at 4M rows: 10x the WAL); for the upgrade set max_wal_size to {needed}GB "
                "or more (ALTER SYSTEM SET max_wal_size = ...; SELECT pg_reload_conf())"
            )
        if self.shared_buffers < self.working_set_bytes:
            needed = math.ceil(self.working_set_bytes / SHARED_BUFFERS_STEP) * SHARED_BUFFERS_STEP // MB
            found.append(
                f"{what}: the table and its indexes, which double during it, take about "
                f"{human_size(self.working_set_bytes)}, more than shared_buffers ({human_size(self.shared_buffers)}), "
                f"so its index inserts read and write pages (measured at 4M rows: 57x the block reads); "
                f"shared_buffers {needed}MB or more keeps them in memory (takes a server restart)"
            )
        return found


def backfilled_tables(plan: MigrationPlan) -> list[str]:
    """Tables the plan's batched data migrations walk whole (their BatchKey), in plan order, once each."""
    tables: list[str] = []
    for step in plan.steps:
        for operation in step.migration.operations:
            if isinstance(operation, RunSQLBatched):
                key = operation.batch_key(step.backwards)
                if key is not None and key.table not in tables:
                    tables.append(key.table)
    return tables


def rewrite_warnings(engine: DatabaseEngine, plan: MigrationPlan) -> list[str]:
    """What the server's settings will cost the plan's backfills, one line each (none on SQLite, and
    none for a table the plan creates: it is empty when its backfill runs)."""
    found: list[str] = []
    for table in backfilled_tables(plan):
        facts = engine.rewrite_facts(table)
        if facts is not None:
            found.extend(TableRewrite.of(facts).warnings())
    return found
