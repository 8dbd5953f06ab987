"""The worker side of a rehearsal: in the child process where the copy is the only database
(copy_worker.py), migrate it through an ordinary pipeline, reverse it, compare, forward again."""

from __future__ import annotations

import re
import time
from typing import Any

from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops.fingerprint import table_checksums
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.pipeline.core import Pipeline, Reporter
from migrations_ops.status import BOOKKEEPING_TABLES, current_migrations
from migrations_ops.strategies.transactional import ObservedMigrate, TransactionalStrategy


def rehearse_copy(options: dict[str, Any], say: Reporter) -> dict[str, Any]:
    """In the worker: migrate the copy (``default``), reverse it, compare, forward again.

    Returns the findings as a JSON-able dict (the inner summary, per-migration durations, locks,
    what the reverse lost and which migrations wrote the tables that differ).
    """
    alias = DEFAULT_DB_ALIAS
    pre_state = current_migrations(alias)
    pre_checksums = table_checksums(using=alias)
    inner = Pipeline(
        alias,
        SafeMigrateOptions(
            app_label=options["app_label"],
            migration_name=options["migration_name"],
            allow_row_loss=frozenset(options["allow_row_loss"]),
            accept_existing_issues=options["accept_existing_issues"],
        ),
        report=say,
        strategy=TransactionalStrategy,
        take_backup=False,
        take_lock=False,
    )
    summary = inner.run()
    findings: dict[str, Any] = {
        "inner": {**summary.to_dict(), "exit_code": summary.exit_code},
        "migration_durations": dict(inner.step_durations),
        "exclusive_lock_s": dict(inner.exclusive_locks),
        "irreversible": [],
        "reverse_checked_tables": None,
        "reapply_s": None,
    }
    if summary.status != "applied" or inner.plan is None:
        return findings

    # Reverse on the copy, compare content with the pre-state, then forward again; the statements
    # each migration runs (both ways) tell which ones wrote a table that differs.
    steps = inner.plan.steps
    irreversible_steps = [step.revision for step in steps if not step.reversible]
    if irreversible_steps:
        findings["irreversible"] = [f"{revision} has an irreversible operation" for revision in irreversible_steps]
        return findings
    writes = TableWrites()
    for app in sorted({step.app for step in steps}):
        writes.migrate(alias, app, pre_state.get(app, "zero"))
    post_checksums = table_checksums(using=alias)
    differing = sorted(
        table
        for table in set(pre_checksums) | set(post_checksums)
        if table not in BOOKKEEPING_TABLES and pre_checksums.get(table) != post_checksums.get(table)
    )
    started = time.monotonic()
    writes.migrate(alias, *[a for a in (options["app_label"], options["migration_name"]) if a])
    findings["reapply_s"] = round(time.monotonic() - started, 3)
    for table in differing:
        suspects = [
            step.revision for step in steps if table in step.tables or table in writes.by_step.get(step.revision, ())
        ]
        findings["irreversible"].append(
            f"{table} differs after the reverse migration (suspects: {', '.join(suspects) or 'unknown'})"
        )
    findings["reverse_checked_tables"] = len(set(pre_checksums) - BOOKKEEPING_TABLES)
    return findings


# Statements that write a table, and the table they write (schema-qualified or not, quoted or not).
_WRITE = re.compile(
    r"^\s*(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM|TRUNCATE(?:\s+TABLE)?|ALTER\s+TABLE(?:\s+ONLY)?(?:\s+IF\s+EXISTS)?"
    r"|DROP\s+TABLE(?:\s+IF\s+EXISTS)?|CREATE\s+TABLE(?:\s+IF\s+NOT\s+EXISTS)?)\s+"
    r"(?:\"?\w+\"?\.)?\"?(\w+)\"?",
    re.IGNORECASE,
)


def written_table(sql: str) -> str | None:
    """The table a statement writes (INSERT, UPDATE, DELETE, TRUNCATE, ALTER/CREATE/DROP TABLE), else None."""
    match = _WRITE.match(sql)
    return match.group(1) if match else None


class TableWrites:
    """Which tables each migration's statements wrote, observed while ``migrate`` runs it.

    Names the migrations behind a table that differs after a reverse: a data migration that
    never touched the table is no suspect, whatever operations it has.
    """

    def __init__(self) -> None:
        self.by_step: dict[str, set[str]] = {}
        self._current: str | None = None

    def _observe(self, action: str, migration, fake: bool) -> None:
        if action in ("apply_start", "unapply_start"):
            self._current = f"{migration.app_label}.{migration.name}"
        elif action in ("apply_success", "unapply_success"):
            self._current = None

    def __call__(self, execute, sql, params, many, context):
        table = written_table(sql) if self._current and isinstance(sql, str) else None
        if table:
            self.by_step.setdefault(self._current, set()).add(table)
        return execute(sql, params, many, context)

    def migrate(self, using: str, *targets: str) -> None:
        with connections[using].execute_wrapper(self):
            call_command(ObservedMigrate(self._observe), *targets, database=using, verbosity=0, interactive=False)
