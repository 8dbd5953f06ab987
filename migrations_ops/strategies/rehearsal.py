"""`safe_migrate --rehearse`: the whole migration on a scratch copy, then proof it reverses.

A pipeline run on a scratch copy: :func:`rehearse` takes the live database's lock and plan through
a :class:`Pipeline` (the same audit trail), backs the live database up (its only access to it:
reading) and restores that backup into a scratch copy. A child process
(:mod:`migrations_ops.copy_worker`) in which the copy is the ONLY configured database then runs a
second, ordinary pipeline there, reverses it and compares (``copy_worker.rehearse_copy``): a data
migration that ignores ``schema_editor.connection.alias`` cannot reach the live database.
The copy is always dropped, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops import backups
from migrations_ops.aliases import temporary_alias
from migrations_ops.engines import get_engine
from migrations_ops.engines.processes import StreamReader, first_error, kill_all, returncode_text
from migrations_ops.errors import OperationFailed, OpsError
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.pipeline.core import Pipeline, Reporter
from migrations_ops.pipeline.summary import MigrationSummary
from migrations_ops.planning import MigrationPlan
from migrations_ops.strategies.worker_protocol import RESULT, SAY
from migrations_ops.timeouts import lock_timeout
from migrations_ops.validation import ValidationReport


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
    live = Pipeline(using, options, report, summary=result, **runner_options)
    if live.options.from_backup:
        # An unknown or invalid name is bad input even when there is nothing to rehearse (it was exit 0).
        try:
            backups.get_backup(live.options.from_backup)
        except OpsError as exc:
            result.error, result.exit_code, result.status = exc.message, int(exc.exit_code), "failed"
            return result
    live.execute(lambda plan: _rehearse(live, plan, result))
    return result


def _rehearse(live: Pipeline, plan: MigrationPlan, result: RehearsalResult) -> None:
    options = live.options
    started = time.monotonic()
    if options.from_backup:
        manifest = backups.get_backup(options.from_backup)
        # A damaged file is the operator's input, not a failed rehearsal: exit 2 before any copy exists.
        unchanged = "nothing was changed (the live database is only read)"
        backups.check_restorable(
            manifest,
            live.engine,
            f"backup {manifest.name!r} is a {manifest.engine} backup and the database is "
            f"{live.engine.vendor}: refusing to rehearse across engines; {unchanged}",
        )
        backups.require_intact(manifest, unchanged)
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
            try:
                copy.restore(manifest.dump_file(), None, lock_timeout())
            except OperationFailed as exc:
                raise OperationFailed(
                    f"rehearsal from backup {manifest.name}: {exc.message}; that is the scratch copy "
                    f"{copy.display_name()} (dropped), the live database {live.engine.display_name()} is untouched"
                ) from exc
            result.durations["backup_s"] = time.monotonic() - started
            result.copy = copy.display_name()
            connections[alias].close()  # the worker is the copy's only user from here on
            _take_findings(result, _run_worker(scratch, options, live.say))
        finally:
            connections[alias].close()
            copy.drop_database()
    if result.inner is not None and result.inner.error:
        result.status = "failed"
        raise OperationFailed(
            f"rehearsal failed on the copy: {result.inner.error} "
            f"(the live database {live.engine.display_name()} is untouched)"
        )
    result.status = "rehearsed"
    if result.irreversible:
        live.say("Reverse loses data: " + "; ".join(result.irreversible))


# --------------------------------------------------------------------------- the live side


def _run_worker(scratch: dict[str, Any], options: SafeMigrateOptions, say: Reporter) -> dict[str, Any]:
    """Migrate the copy in a child process where it is the only database (see copy_worker)."""
    # Under override_settings SETTINGS_MODULE reads None: the environment still names the module.
    module = settings.SETTINGS_MODULE or os.environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        raise OperationFailed("a rehearsal needs DJANGO_SETTINGS_MODULE (the copy is migrated in a child process)")
    request = {
        "settings_module": module,
        # What the running process may have changed since its settings module loaded, and the copy
        # as the ONLY database: the live one is not configured in the worker at all.
        "overrides": {
            "DATABASES": {DEFAULT_DB_ALIAS: scratch},
            **{name: getattr(settings, name) for name in _CARRIED_SETTINGS if hasattr(settings, name)},
        },
        "sys_path": sys.path,
        "options": {
            "app_label": options.app_label,
            "migration_name": options.migration_name,
            "allow_row_loss": sorted(options.allow_row_loss),
            "accept_existing_issues": options.accept_existing_issues,
        },
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "migrations_ops.copy_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=str(settings.BASE_DIR) if getattr(settings, "BASE_DIR", None) else None,
    )
    stderr = StreamReader(process.stderr)
    stderr.start()
    findings = None
    try:
        process.stdin.write(json.dumps(request, default=str).encode())
        process.stdin.close()
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode(errors="replace").rstrip("\n")
            if line.startswith(RESULT):
                findings = json.loads(line[len(RESULT) :])
            elif line.strip():
                say(f"  [copy] {line.removeprefix(SAY)}")
        code = process.wait()
    finally:
        kill_all([process])  # on any way out (Ctrl-C included) the worker does not outlive us
        stderr.join(timeout=5)
    if findings is None:
        raise OperationFailed(
            "the rehearsal worker failed: "
            + first_error(stderr.text, returncode_text("the rehearsal worker", code))
            + " (the live database is untouched)"
        )
    return findings


# Settings a test or a caller may have changed in the running process, which the worker must share.
_CARRIED_SETTINGS = (
    "INSTALLED_APPS",
    "MIGRATION_MODULES",
    "BACKUP_DIR",
    "MIGRATION_LOG",
    "MIGRATION_LOCK_TIMEOUT",
    "BACKUP_KEEP",
)


def _take_findings(result: RehearsalResult, findings: dict[str, Any]) -> None:
    inner = findings["inner"]
    validation = inner.get("validation")
    result.inner = MigrationSummary(
        status=inner["status"],
        applied=inner["applied"],
        rollback=inner["rollback"],
        validation=ValidationReport.from_dict(validation) if validation else None,
        durations=inner["durations"],
        error=inner["error"],
        exit_code=inner["exit_code"],
    )
    result.applied = []
    result.validation = result.inner.validation
    result.migration_durations = findings["migration_durations"]
    result.exclusive_lock_s = findings["exclusive_lock_s"]
    result.irreversible = findings["irreversible"]
    result.reverse_checked_tables = findings["reverse_checked_tables"]
    result.reapply_s = findings["reapply_s"]
