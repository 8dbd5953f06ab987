"""`safe_migrate --rehearse`: the whole migration on a scratch copy, then proof it reverses.

A peer of the runner, not part of it: :func:`rehearse` takes the live database's lock and plan
through a :class:`SafeMigration` (the same audit trail), backs the live database up (its only
access to it: reading) and restores that backup into a scratch copy. A child process
(:mod:`migrations_ops.copy_worker`) in which the copy is the ONLY configured database then runs a
second, ordinary :class:`SafeMigration` there, reverses it and compares (:func:`rehearse_copy`):
a data migration that ignores ``schema_editor.connection.alias`` cannot reach the live database.
The copy is always dropped, also on failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops import backups, copy_worker
from migrations_ops.aliases import temporary_alias
from migrations_ops.engines import get_engine
from migrations_ops.engines.processes import StreamReader, first_error, kill_all, returncode_text
from migrations_ops.errors import OperationFailed, OpsError
from migrations_ops.fingerprint import table_checksums
from migrations_ops.planning import MigrationPlan
from migrations_ops.runner import MigrationSummary, ObservedMigrate, Reporter, SafeMigrateOptions, SafeMigration
from migrations_ops.status import BOOKKEEPING_TABLES, current_migrations
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
    live = SafeMigration(using, options, report, summary=result, **runner_options)
    if live.options.from_backup:
        # An unknown or invalid name is bad input even when there is nothing to rehearse (it was exit 0).
        try:
            backups.get_backup(live.options.from_backup)
        except OpsError as exc:
            live._fail(exc)
            return result
    live.execute(lambda plan: _rehearse(live, plan, result))
    return result


def _rehearse(live: SafeMigration, plan: MigrationPlan, result: RehearsalResult) -> None:
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
            if line.startswith(copy_worker.RESULT):
                findings = json.loads(line[len(copy_worker.RESULT) :])
            elif line.strip():
                say(f"  [copy] {line.removeprefix(copy_worker.SAY)}")
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


# --------------------------------------------------------------------------- the worker side


def rehearse_copy(options: dict[str, Any], say: Reporter) -> dict[str, Any]:
    """In the worker: migrate the copy (``default``), reverse it, compare, forward again.

    Returns the findings as a JSON-able dict (the inner summary, per-migration durations, locks,
    what the reverse lost and which migrations wrote the tables that differ).
    """
    alias = DEFAULT_DB_ALIAS
    pre_state = current_migrations(alias)
    pre_checksums = table_checksums(using=alias)
    inner = SafeMigration(
        alias,
        SafeMigrateOptions(
            app_label=options["app_label"],
            migration_name=options["migration_name"],
            allow_row_loss=frozenset(options["allow_row_loss"]),
            accept_existing_issues=options["accept_existing_issues"],
        ),
        report=say,
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
