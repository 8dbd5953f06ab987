"""The safe_migrate pipeline: lock, plan, preflight, backup, apply, validate, recover, audit.

Two ways to apply a plan, chosen from the plan before anything runs (see planning.py):

* transaction: every migration of the plan and the validation that follows run in ONE
  transaction; any failure rolls it back and the database is exactly as before, no restore needed.
* restore: a plan with non-atomic steps (atomic = False, CONCURRENTLY) runs migration by
  migration; on failure the pre-migrate backup is restored with restore_db's atomic replacement
  (writes made by other clients since the backup are lost, which is why the first path is preferred).

The plan is applied by Django's own `migrate` command (so pre/post_migrate signals, content types
and permissions behave exactly as under `migrate`), observed through its progress callback.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.utils import DatabaseError

from migrations_ops import audit, backups
from migrations_ops.checks import CheckResult, Problems
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import current_owner
from migrations_ops.errors import BadInput, ExitCode, OperationFailed, OpsError, RecoveryFailed, first_line
from migrations_ops.formatting import human_size
from migrations_ops.planning import TRANSACTION, MigrationPlan, build_plan
from migrations_ops.records import record_migration_run
from migrations_ops.status import BOOKKEEPING_TABLES, applied_migrations
from migrations_ops.timeouts import lock_timeout
from migrations_ops.validation import ValidationReport, run_validation

Reporter = Callable[[str], None]
LOCK_RETRIES = 3
LOCK_BACKOFF_S = (0.5, 1.0, 2.0)


@dataclass
class SafeMigrateOptions:
    app_label: str | None = None
    migration_name: str | None = None
    plan_only: bool = False
    dry_run: bool = False
    rehearse: bool = False
    from_backup: str | None = None
    allow_row_loss: frozenset[str] = frozenset()
    fake: bool = False
    fake_initial: bool = False
    accept_existing_issues: bool = False
    online: bool = False  # expand, backfill in batches, validate: the application keeps running
    resume: bool = False  # with online: continue a killed online run from its checkpoint
    abort: bool = False  # with online: undo an unfinished online run
    lint: bool = False  # with plan_only: exit 1 when the plan cannot run online


@dataclass
class MigrationSummary:
    """The outcome of one safe_migrate run; objects until the edge (``to_dict`` for --json, ``render``)."""

    status: str = "failed"
    applied: list[str] = field(default_factory=list)
    backup: str | None = None
    rollback: str | None = None
    validation: ValidationReport | None = None
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    plan: MigrationPlan | None = None
    exit_code: int = int(ExitCode.OK)

    @property
    def applied_count(self) -> int:
        return len(self.applied)

    def to_dict(self) -> dict[str, Any]:
        """The contract's ``--json`` summary."""
        return {
            "status": self.status,
            "applied": self.applied,
            "backup": self.backup,
            "rollback": self.rollback,
            "validation": self.validation.to_dict() if self.validation else {},
            "durations": {key: round(value, 3) for key, value in self.durations.items()},
            "error": self.error,
            "plan": self.plan.to_dict() if self.plan else {},
        }

    def render_plan(self) -> str:
        """The plan as --plan and --dry-run print it."""
        return self.plan.render() if self.plan else ""

    def render(self) -> str:
        """The closing line of the human output."""
        durations = ", ".join(f"{key[:-2]} {value:.2f}s" for key, value in self.durations.items())
        # Bad input (exit 2) changed nothing: "failed" would read as a failed migration.
        status = "refused, nothing was changed" if self.exit_code == ExitCode.BAD_INPUT else self.status
        return f"Status: {status} ({durations})"


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run (BaseException: nothing may swallow it)."""


class ValidationFailed(Exception):
    def __init__(self, message: str, report: ValidationReport) -> None:
        super().__init__(message)
        self.report = report


class StepFailed(Exception):
    """A migration (or the check right after it) failed; carries the migration's label."""


@contextlib.contextmanager
def interrupt_guard(on_interrupt: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn SIGINT/SIGTERM into :class:`Interrupted` in the main thread while the block runs.

    ``on_interrupt`` runs first (it cancels a statement that is executing, so the exception is
    raised promptly instead of after a long query).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        if on_interrupt is not None:
            with contextlib.suppress(Exception):  # best effort: the raise below is what matters
                on_interrupt()
        raise Interrupted(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def signals_deferred() -> Iterator[list[str]]:
    """While recovering, a second Ctrl-C must not abandon the recovery: note signals, act later."""
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def handler(signum, frame):
        received.append(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _ObservedMigrate(MigrateCommand):
    """Django's migrate, with our observer called from its progress callback."""

    def __init__(self, observer: Callable[[str, Any, bool], None]) -> None:
        super().__init__()
        self._observer = observer

    def migration_progress_callback(self, action, migration=None, fake=False):
        super().migration_progress_callback(action, migration, fake)
        self._observer(action, migration, fake)


@dataclass
class _StateSnapshot:
    migrations: dict[str, list[str]]
    row_counts: dict[str, int]


class SafeMigration:
    """One safe_migrate run against connection ``using``."""

    def __init__(
        self,
        using: str = DEFAULT_DB_ALIAS,
        options: SafeMigrateOptions | None = None,
        report: Reporter | None = None,
        *,
        take_backup: bool = True,
        take_lock: bool = True,
        confirm: Callable[[MigrationPlan], bool] | None = None,
        progress: Callable[[str], Any] | None = None,
        summary: MigrationSummary | None = None,
    ) -> None:
        self.using = using
        self.options = options or SafeMigrateOptions()
        self._report = report or (lambda line: None)
        self.take_backup = take_backup
        self.take_lock = take_lock
        self.confirm = confirm
        # progress("backup") -> a progress(done, total, item) callable with .finish(), or None
        self._progress = progress or (lambda label: None)
        self.engine = get_engine(using)
        self.summary = summary if summary is not None else MigrationSummary()
        self.plan: MigrationPlan | None = None
        self.step_durations: dict[str, float] = {}
        self.exclusive_locks: dict[str, float] = {}
        self._lock_seen: dict[str, float] = {}
        self._step_started = 0.0
        self._transactional = False
        self._accepted_failures: dict[str, Problems] = {}
        self._current: str | None = None

    # ------------------------------------------------------------------ helpers
    @property
    def connection(self):
        return connections[self.using]

    def say(self, line: str) -> None:
        self._report(line)

    def _event(self, event: str, **fields: Any) -> None:
        audit.record(f"safe_migrate.{event}", database=self.engine.database_info(), **fields)

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.summary.durations[f"{name}_s"] = self.summary.durations.get(f"{name}_s", 0.0) + (
                time.monotonic() - started
            )

    def snapshot(self) -> _StateSnapshot:
        return _StateSnapshot(migrations=applied_migrations(self.using), row_counts=self.engine.row_counts())

    # ------------------------------------------------------------------ the pipeline
    def run(self) -> MigrationSummary:
        """Run the whole pipeline; never raises for an operation failure: the summary says it."""
        return self.execute(self._migrate)

    def execute(self, action: Callable[[MigrationPlan | None], None], *, planned: bool = True) -> MigrationSummary:
        """Lock, plan and confirm, then ``action(plan)``; audit lines and the MigrationRun record around.

        ``run`` passes the live migration; ``rehearsal.rehearse`` passes its work on a copy, so both
        share one lock, one plan and one audit trail. ``planned=False``: no plan is built and
        ``action(None)`` runs (``--online --resume`` / ``--abort`` work from their checkpoint).
        """
        started = time.monotonic()
        self._event("start", options={k: v for k, v in vars(self.options).items() if k != "allow_row_loss"})
        try:
            lock = (
                self.engine.migration_lock(current_owner("safe_migrate"))
                if self.take_lock
                else contextlib.nullcontext()
            )
            with lock:
                plan = self._plan() if planned else None
                if plan is not None or not planned:
                    action(plan)
        except OpsError as exc:
            self.summary.error = exc.message
            self.summary.exit_code = int(exc.exit_code)
            if self.summary.status not in ("rolled_back", "restored"):
                self.summary.status = "failed"
        self.summary.durations["total_s"] = time.monotonic() - started
        self._event(
            "end",
            status=self.summary.status,
            exit_code=self.summary.exit_code,
            applied=self.summary.applied,
            backup=self.summary.backup,
            rollback=self.summary.rollback,
            error=self.summary.error,
            durations=self.summary.durations,
        )
        record_migration_run(self.using, self.summary)
        return self.summary

    def _plan(self) -> MigrationPlan | None:
        """The plan, or None when there is nothing more to do (empty, or --plan)."""
        with self._phase("plan"):
            plan = build_plan(self.using, self.options.app_label, self.options.migration_name)
        self.plan = self.summary.plan = plan
        if not plan.empty:
            direction = "backwards" if plan.backwards else "forwards"
            self.say(f"Plan: {len(plan.steps)} migration(s) {direction}; rollback path: {plan.rollback_description}")
        self._event("plan", steps=[s.revision for s in plan.steps], path=plan.rollback_path)
        if plan.empty:
            self.summary.status = "nothing_to_do"
            self.say("Nothing to migrate: the database is at the target.")
            return None
        if self.options.plan_only:
            self.summary.status = "planned"
            return None
        if plan.backwards and self.confirm is not None and not self.confirm(plan):
            raise BadInput("confirmation refused: nothing was changed")
        return plan

    def _migrate(self, plan: MigrationPlan) -> None:
        before = self._preflight(plan)
        backup = self._backup() if self.take_backup else None
        if self.options.dry_run:
            self.summary.status = "dry_run"
            self.say("Dry run: backup taken, nothing migrated.")
            return
        self._apply(plan, before, backup)

    # ------------------------------------------------------------------ preflight
    def _preflight(self, plan: MigrationPlan) -> _StateSnapshot:
        with self._phase("preflight"):
            self.engine.check_ready_for_migration(backup_dir=settings.BACKUP_DIR)
            report = run_validation(using=self.using)
            if not report.ok:
                failing = {result.name: result.problems() for result in report.failures()}
                if not self.options.accept_existing_issues:
                    raise BadInput(
                        "the database fails validation before migrating: "
                        + ", ".join(sorted(failing))
                        + " (run validate_db for details; --accept-existing-issues to migrate anyway)"
                    )
                self._accepted_failures = failing
            before = self.snapshot()
        self._event("preflight", tables=before.row_counts, accepted_failures=sorted(self._accepted_failures))
        checks = len(report.checks)
        self.say(
            f"Preflight: ok ({checks} checks, {len(before.row_counts)} tables counted, "
            f"{self.summary.durations.get('preflight_s', 0.0):.2f}s)"
        )
        self.pre_validation = report
        return before

    # ------------------------------------------------------------------ backup
    def _backup(self) -> backups.BackupManifest:
        with self._phase("backup"), _progress_of(self._progress("backup")) as progress:
            manifest = backups.create_backup(using=self.using, reason="pre-migrate", progress=progress)
            verification = backups.verify_backup(manifest.name, using=self.using)
            if not verification.ok:
                raise OperationFailed(
                    f"the pre-migrate backup {manifest.name} failed verification: "
                    + "; ".join(verification.failures())
                    + "; nothing was migrated"
                )
        self.summary.backup = manifest.name
        self._event("backup", name=manifest.name, sha256=manifest.sha256, size_bytes=manifest.size_bytes)
        self.say(
            f"Backup: {manifest.name} ({human_size(manifest.size_bytes)}, sha256 {manifest.sha256[:12]}...) "
            f"verified ({self.summary.durations.get('backup_s', 0.0):.2f}s)"
        )
        return manifest

    # ------------------------------------------------------------------ apply
    def _apply(self, plan: MigrationPlan, before: _StateSnapshot, backup) -> None:
        self._transactional = plan.rollback_path == TRANSACTION
        self.say(
            f"Applying {len(plan.steps)} migration(s) in one transaction"
            if self._transactional
            else "Applying migration by migration (rollback by restoring the backup): "
            + "; ".join(plan.non_transactional_reasons)
        )
        try:
            with interrupt_guard(self.engine.cancel_running_statement):
                if self._transactional:
                    self._apply_in_transaction(plan, before)
                else:
                    self._apply_then_validate(plan, before)
        except (Exception, Interrupted) as exc:
            message = first_line(exc)
            self.summary.error = message
            self._event("failed", error=message, path=plan.rollback_path)
            with signals_deferred():
                if self._transactional:
                    self.summary.rollback = "transaction"
                    self.summary.status = "rolled_back"
                    self.say(f"Failed: {message}. Rolled back: the database is as it was.")
                else:
                    self._restore_after_failure(backup, message)
                self._clear_caches()
                self._verify_recovered(before, backup)
            self.summary.applied = []
            raise OperationFailed(
                f"{message}; rolled back ({self.summary.rollback}), the database is as it was before"
            ) from None
        self.summary.status = "applied"
        checks = len(self.summary.validation.checks) if self.summary.validation else 0
        self.say(
            f"Validation: {checks} checks passed ({self.summary.durations.get('validate_s', 0.0):.2f}s); committed."
        )
        self._prune()

    def _migrate_kwargs(self) -> tuple[list[str], dict[str, Any]]:
        args = [a for a in (self.options.app_label, self.options.migration_name) if a]
        kwargs = {
            "database": self.using,
            "interactive": False,
            "verbosity": 0,
            "fake": self.options.fake,
            "fake_initial": self.options.fake_initial,
            "skip_checks": True,
        }
        return args, kwargs

    def _observe(self, action: str, migration, fake: bool) -> None:
        if action in ("apply_start", "unapply_start"):
            self._step_started = time.monotonic()
            self._current = f"{migration.app_label}.{migration.name}"
            return
        if action not in ("apply_success", "unapply_success"):
            return
        label = f"{migration.app_label}.{migration.name}"
        elapsed = time.monotonic() - self._step_started
        if self._transactional:
            # Deferred foreign keys fire now, inside the transaction: a violation names this
            # migration, and no "pending trigger events" can block the next ALTER TABLE.
            try:
                self.connection.check_constraints()
            except DatabaseError as exc:
                raise StepFailed(f"{label} left a constraint violation: {first_line(exc)}") from exc
            for table in self.engine.exclusively_locked_tables():
                self._lock_seen.setdefault(table, self._step_started)
        else:
            for table in self._tables_of(migration):
                self.exclusive_locks[table] = max(self.exclusive_locks.get(table, 0.0), elapsed)
        self.step_durations[label] = elapsed
        direction = "unapplied" if action == "unapply_success" else "applied"
        self.summary.applied.append(label)
        self._event("migration", revision=label, direction=direction, duration_s=round(elapsed, 4), fake=fake)
        self.say(f"  {direction} {label} ({elapsed:.2f}s)")

    def _tables_of(self, migration) -> list[str]:
        label = f"{migration.app_label}.{migration.name}"
        return next((step.tables for step in self.plan.steps if step.revision == label), [])

    def _run_migrate(self) -> None:
        args, kwargs = self._migrate_kwargs()
        try:
            call_command(_ObservedMigrate(self._observe), *args, **kwargs)
        except StepFailed:
            raise
        except Exception as exc:
            raise StepFailed(f"{self._current or 'the plan'} failed: {first_line(exc)}") from exc

    def _apply_in_transaction(self, plan: MigrationPlan, before: _StateSnapshot) -> None:
        for attempt in range(LOCK_RETRIES + 1):
            self.summary.applied = []
            self._lock_seen = {}
            try:
                with self.engine.transactional_migration():
                    with transaction.atomic(using=self.using):
                        self.engine.set_lock_timeout(lock_timeout())
                        with self._phase("migrate"):
                            self._run_migrate()
                        with self._phase("validate"):
                            self.connection.check_constraints()
                            self._post_validate(plan, before)
                commit_at = time.monotonic()  # locks are released at COMMIT, just above
                for table, since in self._lock_seen.items():
                    self.exclusive_locks[table] = commit_at - since
                return
            except StepFailed as exc:
                if attempt < LOCK_RETRIES and self.engine.is_lock_timeout(exc.__cause__ or exc):
                    wait = LOCK_BACKOFF_S[min(attempt, len(LOCK_BACKOFF_S) - 1)]
                    self._event("lock_timeout_retry", attempt=attempt + 1, wait_s=wait)
                    self.say(f"  lock wait timed out; retrying in {wait:.1f}s (attempt {attempt + 2})")
                    time.sleep(wait)
                    continue
                raise

    def _apply_then_validate(self, plan: MigrationPlan, before: _StateSnapshot) -> None:
        with self._phase("migrate"):
            self._run_migrate()
        with self._phase("validate"):
            self._post_validate(plan, before)

    def _post_validate(self, plan: MigrationPlan, before: _StateSnapshot) -> None:
        report = run_validation(using=self.using)
        guard = self._row_count_guard(plan, before, report.tables or self.engine.row_counts())
        report.checks.append(guard)
        # Accepted: a check that failed before with the same problems (by identity), none of them new.
        failures = [
            result
            for result in report.failures()
            if result.name not in self._accepted_failures
            or not result.problems().within(self._accepted_failures[result.name])
        ]
        self.summary.validation = report
        self._event("validate", ok=not failures, failures=[result.name for result in failures])
        if failures:
            names = ", ".join(result.name for result in failures)
            raise ValidationFailed(f"validation failed after migrating: {names} ({_brief(failures[0])})", report)

    def _row_count_guard(self, plan: MigrationPlan, before: _StateSnapshot, after: dict[str, int]) -> CheckResult:
        """A table that existed before has no fewer rows, unless dropped by the plan or allowed."""
        allowed = set(self.options.allow_row_loss)
        losses = {}
        for table, count in before.row_counts.items():
            if table in BOOKKEEPING_TABLES or table in allowed:
                continue
            if table not in after:
                if table in plan.dropped_tables():
                    continue
                losses[table] = {"before": count, "after": None}
            elif after[table] < count:
                losses[table] = {"before": count, "after": after[table]}
        summary = (
            "; ".join(
                f"{t}: {v['before']} -> {v['after'] if v['after'] is not None else 'table gone'}"
                for t, v in sorted(losses.items())
            )
            + " (name the table with --allow-row-loss to accept)"
            if losses
            else "no table lost rows"
        )
        return CheckResult(name="row_count_guard", ok=not losses, details={"summary": summary, "losses": losses})

    # ------------------------------------------------------------------ recovery
    def _restore_after_failure(self, backup: backups.BackupManifest | None, message: str) -> None:
        if backup is None:
            raise RecoveryFailed(f"{message}; and no pre-migrate backup exists to restore")
        self.say(f"Failed: {message}. Restoring backup {backup.name} ...")
        try:
            with _progress_of(self._progress("restore")) as progress:
                backups.restore_backup(
                    backup.name,
                    using=self.using,
                    safety_backup=False,
                    take_lock=False,
                    validate=False,
                    progress=progress,
                )
        except Exception as exc:
            raise RecoveryFailed(
                f"{message}; restoring {backup.name} also failed ({first_line(exc)}): "
                f"restore by hand from {backup.path}"
            ) from exc
        self.summary.rollback = "restore"
        self.summary.status = "restored"
        self.say(f"Restored {backup.name}. Writes made by other clients since the backup was taken are lost.")

    def _verify_recovered(self, before: _StateSnapshot, backup) -> None:
        """After a rollback or restore the migrations and row counts must equal the pre-state."""
        _reset_connection(self.connection)
        after = self.snapshot()
        problems = []
        if after.migrations != before.migrations:
            problems.append("applied migrations differ from before")
        changed = {
            t: (before.row_counts.get(t), after.row_counts.get(t))
            for t in set(before.row_counts) | set(after.row_counts)
            if before.row_counts.get(t) != after.row_counts.get(t)
        }
        if changed and self._transactional:
            problems.append("row counts differ: " + ", ".join(f"{t} {a}->{b}" for t, (a, b) in sorted(changed.items())))
        if problems:
            where = f": restore by hand from backup {backup.name}" if backup else ""
            raise RecoveryFailed(f"the database is NOT as before after recovery ({'; '.join(problems)}){where}")
        self._event("recovered", rollback=self.summary.rollback)

    def _clear_caches(self) -> None:
        # Content types created by a rolled-back post_migrate must not linger in the cache.
        ContentType.objects.clear_cache()

    def _prune(self) -> None:
        removed = backups.prune_backups(keep=settings.BACKUP_KEEP, reasons={"pre-migrate", "pre-restore"})
        if removed:
            self._event("prune", removed=[getattr(m, "name", str(m)) for m in removed])


@contextlib.contextmanager
def _progress_of(progress) -> Iterator[Any]:
    """Yield a progress callable (or None) and clear its line afterwards."""
    try:
        yield progress
    finally:
        if progress is not None:
            progress.finish()


def _reset_connection(connection) -> None:
    """Roll back whatever is open and start a fresh connection.

    A failure raised from inside a schema editor's __exit__ (SQLite checks foreign keys there)
    leaves Django's atomic bookkeeping mid-block; the raw ROLLBACK is what guarantees nothing of
    the failed transaction survives, and the bookkeeping is reset so the next query reconnects.
    """
    raw = connection.connection
    if raw is not None:
        with contextlib.suppress(Exception):  # the connection may already be gone: nothing to undo then
            raw.rollback()
    connection.in_atomic_block = False
    connection.savepoint_ids = []
    connection.atomic_blocks = []
    connection.needs_rollback = False
    connection.closed_in_transaction = False
    connection.close()


def _brief(result: CheckResult) -> str:
    text = result.details.get("summary") or str(result.details)
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["MigrationSummary", "SafeMigrateOptions", "SafeMigration"]
