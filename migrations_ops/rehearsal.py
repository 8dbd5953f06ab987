"""`safe_migrate --rehearse`: the whole migration on a scratch copy, then proof it reverses.

The live database is only read (by the backup). The copy is always dropped, also on failure or
Ctrl-C.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.management import call_command
from django.db import connections, migrations

from migrations_ops import backups
from migrations_ops.aliases import temporary_alias
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import parse_lock_timeout
from migrations_ops.fingerprint import table_checksums
from migrations_ops.status import current_migrations

if TYPE_CHECKING:
    from migrations_ops.runner import SafeMigration

# Django's bookkeeping rows legitimately change on a round trip (ids of django_migrations rows,
# content types and permissions that post_migrate creates and a reverse does not remove).
ROUND_TRIP_IGNORED = {"django_migrations", "django_content_type", "auth_permission", "django_admin_log"}


def rehearse(runner: SafeMigration) -> None:
    """Run the plan of ``runner`` on a restored copy and record the findings in its summary."""
    from migrations_ops.errors import OperationFailed
    from migrations_ops.runner import SafeMigrateOptions, SafeMigration

    summary = runner.summary
    options = runner.options
    started = time.monotonic()
    if options.from_backup:
        manifest = backups.get_backup(options.from_backup)
    else:
        manifest = backups.create_backup(using=runner.using, reason="rehearsal")
    summary.backup = manifest.name
    runner.say(f"Rehearsal: restoring backup {manifest.name} into a scratch copy")
    findings: dict[str, Any] = {"backup": manifest.name, "path": runner.plan.rollback_path}
    scratch = runner.engine.scratch_settings(f"rehearse_{secrets.token_hex(4)}")
    with temporary_alias(scratch) as alias:
        copy = get_engine(alias)
        copy.create_database()
        try:
            copy.restore(manifest.path, manifest.format, manifest.tables, None, _lock_timeout_s())
            summary.durations["backup_s"] = time.monotonic() - started
            findings["copy"] = copy.display_name()
            findings.update(_rehearse_on_copy(runner, alias, SafeMigration, SafeMigrateOptions))
        finally:
            connections[alias].close()
            copy.drop_database()
    summary.rehearsal = findings
    if findings.get("error"):
        summary.status = "failed"
        raise OperationFailed(f"rehearsal failed on the copy: {findings['error']} (the live database is untouched)")
    summary.status = "rehearsed"
    if findings["irreversible"]:
        runner.say("Reverse loses data: " + "; ".join(findings["irreversible"]))


def _rehearse_on_copy(runner, alias: str, SafeMigration, SafeMigrateOptions) -> dict[str, Any]:  # noqa: N803
    options = runner.options
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
        report=lambda line: runner.say(f"  [copy] {line.strip()}"),
        take_backup=False,
        take_lock=False,
    )
    result = inner.run()
    findings: dict[str, Any] = {
        "status": result.status,
        "applied": result.applied,
        "durations": {k: round(v, 3) for k, v in result.durations.items()},
        "migration_durations": {k: round(v, 4) for k, v in inner.step_durations.items()},
        "exclusive_lock_s": {k: round(v, 4) for k, v in sorted(inner.exclusive_locks.items())},
        "validation": result.validation,
        "error": result.error,
        "irreversible": [],
    }
    runner.summary.applied = []
    runner.summary.validation = result.validation
    if result.status != "applied":
        return findings

    # Reverse on the copy, compare content with the pre-state, then forward again.
    irreversible_steps = [s.revision for s in inner.plan.steps if not s.reversible]
    if irreversible_steps:
        findings["irreversible"] = [f"{r} has an irreversible operation" for r in irreversible_steps]
        return findings
    touched_apps = sorted({step.app for step in inner.plan.steps})
    for app in touched_apps:
        call_command("migrate", app, pre_state.get(app, "zero"), database=alias, verbosity=0, interactive=False)
    post_checksums = table_checksums(using=alias)
    differing = sorted(
        t
        for t in set(pre_checksums) | set(post_checksums)
        if t not in ROUND_TRIP_IGNORED and pre_checksums.get(t) != post_checksums.get(t)
    )
    data_steps = [s.revision for s in inner.plan.steps if _has_data_operation(s.migration)]
    for table in differing:
        culprits = [s.revision for s in inner.plan.steps if table in s.tables] + data_steps
        findings["irreversible"].append(
            f"{table} differs after the reverse migration (suspects: {', '.join(culprits) or 'unknown'})"
        )
    findings["reverse_checked_tables"] = len(set(pre_checksums) - ROUND_TRIP_IGNORED)
    started = time.monotonic()
    call_command(
        "migrate",
        *[a for a in (options.app_label, options.migration_name) if a],
        database=alias,
        verbosity=0,
        interactive=False,
    )
    findings["reapply_s"] = round(time.monotonic() - started, 3)
    return findings


def _has_data_operation(migration) -> bool:
    return any(isinstance(op, migrations.RunPython | migrations.RunSQL) for op in migration.operations)


def _lock_timeout_s() -> float:
    return parse_lock_timeout(settings.MIGRATION_LOCK_TIMEOUT)
