"""`safe_migrate --rehearse`: the whole migration on a scratch copy, then proof it reverses.

A peer of the runner, not part of it: :func:`rehearse` takes the live database's lock and plan
through a :class:`SafeMigration` (the same audit trail), backs the live database up (its only
access to it: reading), restores that backup into a scratch copy and runs a second, ordinary
:class:`SafeMigration` there. The copy is always dropped, also on failure or Ctrl-C.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections, migrations

from migrations_ops import backups
from migrations_ops.aliases import temporary_alias
from migrations_ops.engines import get_engine
from migrations_ops.errors import OperationFailed
from migrations_ops.fingerprint import table_checksums
from migrations_ops.planning import MigrationPlan, PlanStep
from migrations_ops.runner import MigrationSummary, Reporter, SafeMigrateOptions, SafeMigration
from migrations_ops.status import BOOKKEEPING_TABLES, current_migrations
from migrations_ops.timeouts import lock_timeout


@dataclass
class RehearsalResult(MigrationSummary):
    """A safe_migrate summary (status ``rehearsed`` or ``failed``) plus what the copy showed."""

    path: str | None = None  # the plan's rollback path
    copy: str | None = None  # the scratch database's display name
    inner: MigrationSummary | None = None  # the run on the copy
    migration_durations: dict[str, float] = field(default_factory=dict)
    exclusive_lock_s: dict[str, float] = field(default_factory=dict)
    irreversible: list[str] = field(default_factory=list)
    reverse_checked_tables: int | None = None
    reapply_s: float | None = None

    @property
    def ran(self) -> bool:
        return self.path is not None

    def findings(self) -> dict[str, Any]:
        """The ``rehearsal`` part of the --json summary."""
        inner = self.inner or MigrationSummary(status="failed")
        document: dict[str, Any] = {
            "backup": self.backup,
            "path": self.path,
            "copy": self.copy,
            "status": inner.status,
            "applied": inner.applied,
            "durations": {key: round(value, 3) for key, value in inner.durations.items()},
            "migration_durations": {key: round(value, 4) for key, value in self.migration_durations.items()},
            "exclusive_lock_s": {key: round(value, 4) for key, value in sorted(self.exclusive_lock_s.items())},
            "validation": inner.validation.to_dict() if inner.validation else {},
            "error": inner.error,
            "irreversible": self.irreversible,
        }
        if self.reverse_checked_tables is not None:
            document["reverse_checked_tables"] = self.reverse_checked_tables
        if self.reapply_s is not None:
            document["reapply_s"] = self.reapply_s
        return document

    def to_dict(self) -> dict[str, Any]:
        document = super().to_dict()
        if self.ran:
            document["rehearsal"] = self.findings()
        return document

    def render(self) -> str:
        if not self.ran:
            return super().render()
        lines = [f"Rehearsal on a copy of {self.backup} (path: {self.path}):"]
        lines += [f"  {revision}: {seconds:.3f}s" for revision, seconds in self.migration_durations.items()]
        if self.exclusive_lock_s:
            lines.append("  longest ACCESS EXCLUSIVE hold per table:")
            for table, seconds in sorted(self.exclusive_lock_s.items(), key=lambda kv: -kv[1]):
                lines.append(f"    {table}: {seconds:.3f}s")
        if self.irreversible:
            lines.append("  reverse check FAILED:")
            lines += [f"    {line}" for line in self.irreversible]
        elif self.inner is not None and self.inner.status == "applied":
            lines.append(f"  reverse check: {self.reverse_checked_tables or 0} tables identical after migrating back")
        lines.append(super().render())
        return "\n".join(lines)


def rehearse(
    using: str = DEFAULT_DB_ALIAS,
    options: SafeMigrateOptions | None = None,
    report: Reporter | None = None,
    **runner_options: Any,
) -> RehearsalResult:
    """Rehearse the plan for ``options``' target on a copy of ``using``; the live database is only read.

    ``runner_options`` (``confirm``, ``progress``, ``take_lock``) go to the live-side runner.
    """
    result = RehearsalResult()
    live = SafeMigration(using, options, report, summary=result, **runner_options)
    live.execute(lambda plan: _rehearse(live, plan, result))
    return result


def _rehearse(live: SafeMigration, plan: MigrationPlan, result: RehearsalResult) -> None:
    options = live.options
    started = time.monotonic()
    if options.from_backup:
        manifest = backups.get_backup(options.from_backup)
    else:
        manifest = backups.create_backup(using=live.using, reason="rehearsal")
    result.backup = manifest.name
    result.path = plan.rollback_path
    live.say(f"Rehearsal: restoring backup {manifest.name} into a scratch copy")
    scratch = live.engine.scratch_settings(f"rehearse_{secrets.token_hex(4)}")
    with temporary_alias(scratch) as alias:
        copy = get_engine(alias)
        copy.create_database()
        try:
            copy.restore(manifest.dump_file(), None, lock_timeout())
            result.durations["backup_s"] = time.monotonic() - started
            result.copy = copy.display_name()
            _rehearse_on_copy(live, alias, result)
        finally:
            connections[alias].close()
            copy.drop_database()
    if result.inner is not None and result.inner.error:
        result.status = "failed"
        raise OperationFailed(
            f"rehearsal failed on the copy: {result.inner.error} (the live database is untouched)"
        )
    result.status = "rehearsed"
    if result.irreversible:
        live.say("Reverse loses data: " + "; ".join(result.irreversible))


def _rehearse_on_copy(live: SafeMigration, alias: str, result: RehearsalResult) -> None:
    options = live.options
    pre_state = current_migrations(alias)
    pre_checksums = table_checksums(using=alias)
    inner = SafeMigration(
        alias,
        SafeMigrateOptions(
            app_label=options.app_label,
            migration_name=options.migration_name,
            allow_row_loss=options.allow_row_loss,
            accept_existing_issues=options.accept_existing_issues,
        ),
        report=lambda line: live.say(f"  [copy] {line.strip()}"),
        take_backup=False,
        take_lock=False,
    )
    result.inner = inner.run()
    result.migration_durations = dict(inner.step_durations)
    result.exclusive_lock_s = dict(inner.exclusive_locks)
    result.applied = []
    result.validation = result.inner.validation
    if result.inner.status != "applied" or inner.plan is None:
        return

    # Reverse on the copy, compare content with the pre-state, then forward again.
    steps = inner.plan.steps
    irreversible_steps = [step.revision for step in steps if not step.reversible]
    if irreversible_steps:
        result.irreversible = [f"{revision} has an irreversible operation" for revision in irreversible_steps]
        return
    for app in sorted({step.app for step in steps}):
        call_command("migrate", app, pre_state.get(app, "zero"), database=alias, verbosity=0, interactive=False)
    post_checksums = table_checksums(using=alias)
    differing = sorted(
        table
        for table in set(pre_checksums) | set(post_checksums)
        if table not in BOOKKEEPING_TABLES and pre_checksums.get(table) != post_checksums.get(table)
    )
    data_steps = [step.revision for step in steps if _has_data_operation(step)]
    for table in differing:
        culprits = [step.revision for step in steps if table in step.tables] + data_steps
        result.irreversible.append(
            f"{table} differs after the reverse migration (suspects: {', '.join(culprits) or 'unknown'})"
        )
    result.reverse_checked_tables = len(set(pre_checksums) - BOOKKEEPING_TABLES)
    started = time.monotonic()
    call_command(
        "migrate",
        *[a for a in (options.app_label, options.migration_name) if a],
        database=alias,
        verbosity=0,
        interactive=False,
    )
    result.reapply_s = round(time.monotonic() - started, 3)


def _has_data_operation(step: PlanStep) -> bool:
    return any(isinstance(op, migrations.RunPython | migrations.RunSQL) for op in step.migration.operations)
