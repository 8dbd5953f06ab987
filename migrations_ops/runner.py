"""The safe_migrate pipeline: lock, plan, preflight, backup, apply, validate, recover, audit.

The plan is split into segments (planning.py): consecutive atomic migrations run in ONE transaction,
a non-atomic migration (atomic = False, CONCURRENTLY) runs alone. An all-atomic plan is one segment,
so the whole plan and the validation after it are one transaction and a failure is a ROLLBACK.
When a plan has several segments and one fails, the failing segment rolls back (or, non-atomic,
its completed operations are reversed) and the committed ones are reversed by Django, each
migration in its own transaction: other clients' writes are kept. Only when reversing is impossible
or fails is the pre-migrate backup restored, and only with --allow-data-loss (writes since the
backup are lost); otherwise the run stops with exit 4 naming the backup.

SIGINT/SIGTERM are handled from the first database call to the last (interrupts.py): the running
statement or child process is cancelled at once, and the phase that was running ends cleanly.

The plan is applied by Django's own `migrate` command (so pre/post_migrate signals, content types
and permissions behave exactly as under `migrate`), observed through its progress callback, which
also opens and commits the segments' transactions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps as global_apps
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration
from django.db.migrations.recorder import MigrationRecorder
from django.db.models.signals import post_migrate
from django.db.utils import DatabaseError

from migrations_ops import audit, backups, footprint, interrupts
from migrations_ops.capacity import rewrite_warnings
from migrations_ops.checks import CheckResult, Problems
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import current_owner
from migrations_ops.errors import BadInput, ExitCode, OperationFailed, OpsError, RecoveryFailed, first_line
from migrations_ops.formatting import human_size
from migrations_ops.interrupts import Interrupted
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.planning import TRANSACTION, MigrationPlan, Segment, build_plan
from migrations_ops.records import record_migration_run
from migrations_ops.retry import with_retries
from migrations_ops.row_guard import row_count_guard
from migrations_ops.status import BOOKKEEPING_TABLES, applied_migrations
from migrations_ops.timeouts import lock_timeout
from migrations_ops.validation import ValidationReport, run_validation

Reporter = Callable[[str], None]
_BEFORE_APPLY = frozenset({"start", "lock", "plan", "preflight", "backup"})


@dataclass
class MigrationSummary:
    """The outcome of one safe_migrate run; objects until the edge (``to_dict`` for --json, ``render``)."""

    status: str = "failed"
    applied: list[str] = field(default_factory=list)
    backup: str | None = None
    rollback: str | None = None  # "transaction", "reverse", "restore" or None
    validation: ValidationReport | None = None
    durations: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    plan: MigrationPlan | None = None
    exit_code: int = int(ExitCode.OK)
    reversed: list[str] = field(default_factory=list)  # migrations taken back by the "reverse" rollback
    # What the operator must read: server settings a backfill outgrows (capacity.py), the warnings of
    # preflight and of the validation after migrating, post_migrate handlers that failed after a reversal.
    warnings: list[str] = field(default_factory=list)

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
            "reversed": self.reversed,
            "validation": self.validation.to_dict() if self.validation else {},
            "durations": {key: round(value, 3) for key, value in self.durations.items()},
            "error": self.error,
            "plan": self.plan.to_dict() if self.plan else {},
            "warnings": self.warnings,
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


class ValidationFailed(Exception):
    """The validation after migrating failed (the summary's ``validation`` holds the report)."""


class StepFailed(Exception):
    """A migration (or the check right after it) failed; carries the migration's label."""


@contextlib.contextmanager
def interrupt_guard(on_interrupt: Callable[[], None] | None = None) -> Iterator[None]:
    """The run's interrupt handling (interrupts.handling_interrupts) with ``on_interrupt`` as one more
    canceller for the block; inside ``execute`` it joins the guard already installed."""
    with interrupts.handling_interrupts() as state, state.cancellable(on_interrupt or (lambda: None)):
        yield


@dataclass
class _Partial:
    """A non-atomic migration that is running: the operations it has completed so far."""

    migration: Migration
    backwards: bool
    done: list[Any] = field(default_factory=list)


class _TrackedOperation:
    """An operation that notes its own completion (so a failed non-atomic migration can be undone
    operation by operation); every other attribute is the operation's own."""

    def __init__(self, operation, partial: _Partial) -> None:
        self._operation = operation
        self._partial = partial

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operation, name)

    def database_forwards(self, *args, **kwargs) -> None:
        self._operation.database_forwards(*args, **kwargs)
        self._partial.done.append(self._operation)

    def database_backwards(self, *args, **kwargs) -> None:
        self._operation.database_backwards(*args, **kwargs)
        self._partial.done.append(self._operation)


class ObservedMigrate(MigrateCommand):
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
    footprint: footprint.Footprint | None = None  # schema + django_migrations: what the plan can change


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
        self._phase_name = "start"
        self._interrupts = interrupts.current()
        # The segments' state while applying (see _observe).
        self._segment_of: dict[str, Segment] = {}
        self._tx: Any = None  # the open transaction.atomic of an atomic segment
        self._tx_segment: Segment | None = None
        self._tx_steps: list[str] = []
        self._committed: list[str] = []
        self._partial: _Partial | None = None
        self._own_changes: dict[str, int] | None = None  # None: the guard compares row counts
        self._created_recorder = False  # this run created django_migrations (see _prepare)
        self._counts_at_step: dict[str, int] = {}

    # ------------------------------------------------------------------ helpers
    @property
    def connection(self):
        return connections[self.using]

    def say(self, line: str) -> None:
        self._report(line)

    def _warn(self, text: str) -> None:
        """A warning the operator must see: said, in the summary (--json) and in the audit log, once."""
        if text in self.summary.warnings:
            return
        self.summary.warnings.append(text)
        self.say(f"Warning: {text}")
        self._event("warning", text=text)

    def _event(self, event: str, **fields: Any) -> None:
        audit.record(f"safe_migrate.{event}", database=self.engine.database_info(), **fields)

    @contextlib.contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self._phase_name = name
        try:
            yield
        finally:
            self.summary.durations[f"{name}_s"] = self.summary.durations.get(f"{name}_s", 0.0) + (
                time.monotonic() - started
            )

    def snapshot(self) -> _StateSnapshot:
        return _StateSnapshot(
            migrations=applied_migrations(self.using),
            row_counts=self.engine.row_counts(),
            footprint=footprint.capture(self.using),
        )

    # ------------------------------------------------------------------ the pipeline
    def run(self) -> MigrationSummary:
        """Run the whole pipeline; never raises for an operation failure: the summary says it."""
        return self.execute(self._migrate)

    def execute(self, action: Callable[[MigrationPlan | None], None], *, planned: bool = True) -> MigrationSummary:
        """Lock, plan and confirm, then ``action(plan)``; audit lines and the MigrationRun record around.

        ``run`` passes the live migration; ``rehearsal.rehearse`` passes its work on a copy, so both
        share one lock, one plan and one audit trail. ``planned=False``: no plan is built and
        ``action(None)`` runs (``--online --resume`` / ``--abort`` work from their checkpoint).
        SIGINT/SIGTERM are handled from before the first database call until the record is
        written: exit 1, nothing changed (or rolled back).
        """
        started = time.monotonic()
        with interrupts.handling_interrupts() as self._interrupts:
            self._event("start", options={k: v for k, v in vars(self.options).items() if k != "allow_row_loss"})
            try:
                self._phase_name = "lock"
                with (
                    self.engine.hardened_session(lock_timeout()),
                    self._interrupts.cancellable(self.engine.cancel_running_statement),
                ):
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
                self._fail(exc)
            except (Exception, Interrupted) as exc:
                # Before the apply phase nothing was changed (apply converts its own failures).
                unchanged = self._phase_name in _BEFORE_APPLY
                self._fail(
                    OperationFailed(self._describe_failure(exc) + ("; nothing was changed" if unchanged else ""))
                )
            # The outcome is decided: from here to the process's exit a signal is noted, never raised
            # (an outer guard, the command's, outlives this block).
            self._interrupts.decide()
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
                signals=list(self._interrupts.received),
            )
            self._record()
        return self.summary

    def _fail(self, exc: OpsError) -> None:
        self.summary.error = exc.message
        self.summary.exit_code = int(exc.exit_code)
        if self.summary.status not in ("rolled_back", "restored"):
            self.summary.status = "failed"

    def _describe_failure(self, exc: BaseException) -> str:
        """One line for a failure: the signal, a lost connection, a lock wait, or the error itself."""
        phase = self._phase_name
        if self._interrupts.received:
            return f"interrupted by {self._interrupts.received[0]} during {phase}"
        if isinstance(exc, Interrupted):
            return f"interrupted by {exc} during {phase}"
        if self.engine.is_connection_lost(exc):
            return f"the connection to the database was lost during {phase} ({first_line(exc)})"
        if self.engine.is_transient(exc):
            return f"blocked by another session during {phase} ({first_line(exc)})"
        # A clause, not a sentence: it is followed by "; rolled back ..." or ". Rolled back", never "..".
        text = first_line(exc)
        text = text[:-1] if text.endswith(".") and not text.endswith("...") else text
        return f"{phase} failed: {text}" if phase not in ("migrate", "validate") else text

    def _record(self) -> None:
        """The MigrationRun row; a database that is gone cannot take it (the audit log has the run).

        Runs that change nothing in the database by design (--plan, --dry-run, --rehearse) write no row
        there: they promise to leave the live database as it is, so their record is the audit log's.
        """
        if self.options.plan_only or self.options.dry_run or self.options.rehearse:
            return
        try:
            if self.connection.connection is not None and not self.connection.is_usable():
                self.connection.close()
            record_migration_run(self.using, self.summary)
        except DatabaseError as exc:
            audit.record("safe_migrate.run_not_recorded", reason=first_line(exc))

    def _plan(self) -> MigrationPlan | None:
        """The plan, or None when there is nothing more to do (empty, or --plan)."""
        with self._phase("plan"):
            plan = build_plan(self.using, self.options.app_label, self.options.migration_name)
        self.plan = self.summary.plan = plan
        if not plan.empty:
            direction = "backwards" if plan.backwards else "forwards"
            self.say(f"Plan: {len(plan.steps)} migration(s) {direction}; rollback path: {plan.rollback_description}")
            for warning in rewrite_warnings(self.engine, plan):
                self._warn(warning)
        self._event(
            "plan",
            steps=[s.revision for s in plan.steps],
            path=plan.rollback_path,
            segments=[segment.to_dict() for segment in plan.segments],
            warnings=self.summary.warnings,
        )
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
        prepared = self._prepare(plan)
        if prepared is not None:
            self._apply(plan, *prepared)

    def _prepare(self, plan: MigrationPlan) -> tuple[_StateSnapshot, backups.BackupManifest | None] | None:
        """Preflight, then the pre-migrate backup; None after a dry run (backup taken, nothing migrated)."""
        if not self.options.dry_run:
            # Django's migrate creates django_migrations before its first migration, outside our
            # transaction, and on SQLite its schema editor turns foreign-key checks back on, so the
            # first migration of an empty SQLite database failed ("schema editor cannot be used while
            # foreign key constraint checks are enabled") and recovery found the table left behind.
            # Created here, it is part of the state the backup and the after-failure check compare;
            # a failed run removes it again (_drop_created_recorder): the database had no tables.
            recorder = MigrationRecorder(self.connection)
            self._created_recorder = not recorder.has_table()
            recorder.ensure_schema()
        before = self._preflight(plan)
        backup = self._backup() if self.take_backup else None
        if self.options.dry_run:
            self.summary.status = "dry_run"
            self.say("Dry run: backup taken, nothing migrated.")
            return None
        return before, backup

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
        self._event(
            "preflight",
            tables=before.row_counts,
            accepted_failures=sorted(self._accepted_failures),
            warnings=report.warnings(),
        )
        checks = len(report.checks)
        self.say(
            f"Preflight: ok ({checks} checks, {len(before.row_counts)} tables counted, "
            f"{self.summary.durations.get('preflight_s', 0.0):.2f}s)"
        )
        for warning in report.warnings():
            self._warn(warning)
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
        self._segment_of = {step.revision: segment for segment in plan.segments for step in segment.steps}
        self._own_changes = {}  # the segments count their own row changes (where the engine can)
        self.say(
            f"Applying {len(plan.steps)} migration(s) in one transaction"
            if self._transactional
            else f"Applying {len(plan.steps)} migration(s) in {len(plan.segments)} segments: "
            + "; ".join(plan.non_transactional_reasons)
        )
        try:
            with self.engine.transactional_migration():
                with_retries(
                    lambda: self._apply_attempt(plan, before),
                    self._retryable,
                    on_retry=self._retrying,
                )
        except (Exception, Interrupted) as exc:
            message = self._describe_failure(exc)
            self.summary.error = message
            self._event("failed", error=message, path=plan.rollback_path, committed=self._committed)
            # Recovery has begun: a second signal must not abandon it, nor relabel its outcome.
            self._interrupts.decide()
            self._recover(before, backup, message)
            self.summary.applied = []
            raise OperationFailed(
                f"{message}; rolled back ({self.summary.rollback}), the database is as it was before"
            ) from None
        # The final COMMIT is done: the run is applied whatever arrives now (a signal between this
        # point and the end of the run once made a complete upgrade exit 1, "interrupted").
        self._interrupts.decide()
        self._interrupts.end_deferral()  # the span begun just before that COMMIT
        self._finish_applied()

    def _finish_applied(self) -> None:
        self.summary.status = "applied"
        checks = len(self.summary.validation.checks) if self.summary.validation else 0
        self.say(
            f"Validation: {checks} checks passed ({self.summary.durations.get('validate_s', 0.0):.2f}s); committed."
        )
        if self._interrupts.received:
            self.say(f"{self._interrupts.received[0]} arrived after COMMIT: the migration is complete.")
        self._phase_name = "prune"  # still deferred: a few file deletions, never half a prune
        self._prune()

    def _apply_attempt(self, plan: MigrationPlan, before: _StateSnapshot) -> None:
        """Run what is left of the plan (a retry resumes after the committed segments)."""
        self.summary.applied = list(self._committed)
        self._lock_seen = {}
        try:
            with self._phase("migrate"):
                self._run_migrate()
            with self._phase("validate"):
                if self._tx is not None:
                    self.connection.check_constraints()
                self._post_validate(plan, before)
            # From the final COMMIT on the run is complete: signals are noted, not raised (ended in _apply).
            self._interrupts.begin_deferral()
            try:
                self._commit_segment(final=True)
            except BaseException:
                self._interrupts.end_deferral()
                raise
        except BaseException:
            self._rollback_segment()
            raise

    def _retryable(self, exc: BaseException) -> bool:
        """A lock timeout or deadlock in an atomic segment (rolled back whole) is worth another try."""
        return self._partial is None and self.engine.is_transient(exc)

    def _retrying(self, attempt: int, wait: float, exc: BaseException) -> None:
        self._event("lock_timeout_retry", attempt=attempt, wait_s=wait, error=first_line(exc))
        self.say(f"  {first_line(exc)}; retrying in {wait:.1f}s (attempt {attempt + 1})")

    # --- segments: opened and committed from Django's progress callback ---
    def _enter_segment(self, segment: Segment) -> None:
        if self._tx is not None and self._tx_segment is not segment:
            self._commit_segment(final=False)
        if segment.atomic and self._tx is None:
            self.engine.before_segment_transaction()
            self._tx = transaction.atomic(using=self.using)
            self._tx.__enter__()
            self._tx_segment = segment
            self._tx_steps = []
            self.engine.set_lock_timeout(lock_timeout())
            # Every lock the segment's schema changes need, in one order: no deadlock with the application.
            self.engine.lock_tables(sorted({table for step in segment.steps for table in step.tables}))

    def _commit_segment(self, final: bool) -> None:
        if self._tx is None:
            return
        changes = self.engine.own_row_changes()
        self._add_changes(changes)
        tx, self._tx = self._tx, None
        self._interrupts.begin_deferral()  # COMMIT either happens or not; never "interrupted, yet committed"
        try:
            tx.__exit__(None, None, None)
        finally:
            self._interrupts.end_deferral()
        commit_at = time.monotonic()  # locks are released at COMMIT, just above
        for table, since in self._lock_seen.items():
            self.exclusive_locks[table] = max(self.exclusive_locks.get(table, 0.0), commit_at - since)
        self._lock_seen = {}
        self._committed += self._tx_steps
        self._tx_steps = []
        self._tx_segment = None
        if not final:
            self._interrupts.raise_if_interrupted()  # a signal during COMMIT: stop before the next segment

    def _rollback_segment(self) -> None:
        tx, self._tx = self._tx, None
        self._tx_segment = None
        self._tx_steps = []
        if tx is not None:
            with contextlib.suppress(Exception):  # _reset_connection below guarantees the ROLLBACK
                failure = RuntimeError("segment failed")
                tx.__exit__(type(failure), failure, None)
            if self.connection.in_atomic_block:
                _reset_connection(self.connection)

    def _add_changes(self, changes: dict[str, int] | None) -> None:
        if changes is None or self._own_changes is None:
            self._own_changes = None  # the engine cannot tell: the guard compares row counts
            return
        for table, delta in changes.items():
            self._own_changes[table] = self._own_changes.get(table, 0) + delta

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
            self._current = f"{migration.app_label}.{migration.name}"
            segment = self._segment_of.get(self._current)
            if segment is not None:
                self._enter_segment(segment)
                if not segment.atomic:
                    self._track(migration, segment, backwards=action == "unapply_start")
            self._step_started = time.monotonic()
            return
        if action not in ("apply_success", "unapply_success"):
            return
        label = f"{migration.app_label}.{migration.name}"
        elapsed = time.monotonic() - self._step_started
        if self._tx is not None:
            # Deferred foreign keys fire now, inside the transaction: a violation names this
            # migration, and no "pending trigger events" can block the next ALTER TABLE.
            try:
                self.connection.check_constraints()
            except DatabaseError as exc:
                raise StepFailed(f"{label} left a constraint violation: {first_line(exc)}") from exc
            for table in self.engine.exclusively_locked_tables():
                self._lock_seen.setdefault(table, self._step_started)
            self._tx_steps.append(label)
        else:
            for table in self._tables_of(migration):
                self.exclusive_locks[table] = max(self.exclusive_locks.get(table, 0.0), elapsed)
            self._finish_untracked(label)
        self.step_durations[label] = elapsed
        direction = "unapplied" if action == "unapply_success" else "applied"
        self.summary.applied.append(label)
        self._event("migration", revision=label, direction=direction, duration_s=round(elapsed, 4), fake=fake)
        self.say(f"  {direction} {label} ({elapsed:.2f}s)")

    def _track(self, migration, segment: Segment, backwards: bool) -> None:
        """A non-atomic migration: note each completed operation, and its tables' row counts."""
        self._partial = _Partial(migration=migration, backwards=backwards)
        migration.operations = [_TrackedOperation(operation, self._partial) for operation in migration.operations]
        tables = set(self.engine.table_names())
        self._counts_at_step = {
            t: n for t, n in self.engine.row_counts().items() if t in tables and t in self._tables_of(migration)
        }

    def _finish_untracked(self, label: str) -> None:
        """A non-atomic migration committed as it went: it is done, and its row changes are counted."""
        self._committed.append(label)
        self._partial = None
        if self._own_changes is not None and self._counts_at_step:
            after = self.engine.row_counts()
            self._add_changes({t: after.get(t, 0) - n for t, n in self._counts_at_step.items()})
        self._counts_at_step = {}

    def _tables_of(self, migration) -> list[str]:
        label = f"{migration.app_label}.{migration.name}"
        return next((step.tables for step in self.plan.steps if step.revision == label), [])

    def _run_migrate(self) -> None:
        args, kwargs = self._migrate_kwargs()
        try:
            call_command(ObservedMigrate(self._observe), *args, **kwargs)
        except StepFailed:
            raise
        except Exception as exc:
            raise StepFailed(f"{self._current or 'the plan'} failed: {first_line(exc)}") from exc

    def _post_validate(self, plan: MigrationPlan, before: _StateSnapshot) -> None:
        report = run_validation(using=self.using)
        after = report.tables or self.engine.row_counts()
        own = None
        if self._own_changes is not None:
            current = self.engine.own_row_changes() if self._tx is not None else {}
            if current is not None:
                own = dict(self._own_changes)
                for table, delta in current.items():
                    own[table] = own.get(table, 0) + delta
        guard = self._row_count_guard(plan, before, after, own)
        report.checks.append(guard)
        # Accepted: a check that failed before with the same problems (by identity), none of them new.
        failures = [
            result
            for result in report.failures()
            if result.name not in self._accepted_failures
            or not result.problems().within(self._accepted_failures[result.name])
        ]
        self.summary.validation = report
        self._event(
            "validate", ok=not failures, failures=[result.name for result in failures], warnings=report.warnings()
        )
        for warning in report.warnings():
            self._warn(warning)
        if failures:
            names = ", ".join(result.name for result in failures)
            raise ValidationFailed(f"validation failed after migrating: {names} ({_brief(failures[0])})")

    def _row_count_guard(
        self,
        plan: MigrationPlan,
        before: _StateSnapshot,
        after: dict[str, int],
        own_changes: dict[str, int] | None = None,
    ) -> CheckResult:
        """A table that existed before has no fewer rows, unless dropped by the plan or allowed; renamed
        tables are followed (row_guard.row_count_guard).

        ``own_changes`` (rows the plan's own transactions added or removed, where the engine counts
        them) decides when given: rows other clients deleted meanwhile are not the plan's loss.
        """
        return row_count_guard(plan, before.row_counts, after, own_changes, self.options.allow_row_loss)

    # ------------------------------------------------------------------ recovery
    def _recover(self, before: _StateSnapshot, backup: backups.BackupManifest | None, message: str) -> None:
        """Undo the run: ROLLBACK what is open, reverse what committed, restore only as the last resort."""
        self._phase_name = "recovery"
        self._rollback_segment()
        _reset_connection(self.connection)
        self._clear_caches()
        if not self._committed and self._partial is None:
            self.summary.rollback = "transaction"
            self.summary.status = "rolled_back"
            self.say(f"Failed: {message}. Rolled back: the database is as it was.")
        else:
            try:
                self._reverse(before)
                self._clear_caches()
                problems = before.footprint.differences(footprint.capture(self.using)) if before.footprint else []
                if problems:
                    raise OperationFailed("after reversing, " + "; ".join(problems))
                self.summary.rollback = "reverse"
                self.summary.status = "rolled_back"
                self.say(
                    f"Failed: {message}. Reversed {len(self.summary.reversed)} migration(s), each in its own "
                    "transaction: the schema is as it was, other clients' writes are kept."
                )
            except Exception as exc:
                self._event("reverse_failed", error=first_line(exc))
                _reset_connection(self.connection)
                self._restore_or_refuse(backup, message, first_line(exc))
        self._drop_created_recorder(before)
        self._verify_recovered(before, backup)

    def _drop_created_recorder(self, before: _StateSnapshot) -> None:
        """A failed first run leaves the database as it found it: without the django_migrations table
        this run created (empty again after the rollback or reversal; one with rows stays)."""
        if not self._created_recorder:
            return
        recorder = MigrationRecorder(self.connection)
        if recorder.has_table() and not recorder.migration_qs.exists():
            with self.connection.schema_editor() as editor:
                editor.delete_model(recorder.Migration)
            self._event("recorder_dropped", table=recorder.Migration._meta.db_table)
        if before.footprint is not None:
            table = recorder.Migration._meta.db_table
            before.footprint = dataclasses.replace(
                before.footprint, schema={t: v for t, v in before.footprint.schema.items() if t != table}
            )

    def _reverse(self, before: _StateSnapshot) -> None:
        """Take back the failed non-atomic migration's completed operations, then every committed
        migration of this run through Django (each migration in its own transaction)."""
        self._phase_name = "reverse"
        partial, self._partial = self._partial, None
        if partial is not None and partial.done:
            if partial.backwards:
                raise OperationFailed(f"{partial.migration.name} failed part-way backwards: no operation to reverse")
            executor = MigrationExecutor(self.connection)
            key = (partial.migration.app_label, partial.migration.name)
            undo = Migration(partial.migration.name, partial.migration.app_label)
            undo.operations = list(partial.done)
            with self.connection.schema_editor(atomic=False) as editor:
                undo.unapply(executor.loader.project_state(key, at_end=False), editor)
            self.summary.reversed.append(f"{key[0]}.{key[1]} (its {len(partial.done)} completed operation(s))")
        if not self._committed:
            return
        executor = MigrationExecutor(self.connection, self._observe_reverse)
        targets = _targets_for(executor, before.migrations, {label.split(".", 1)[0] for label in self._committed})
        reverse_plan = executor.migration_plan(targets)
        planned = {f"{m.app_label}.{m.name}" for m, _ in reverse_plan}
        if planned != set(self._committed):
            raise OperationFailed(
                "reversing would not take back exactly this run's migrations "
                f"({', '.join(sorted(planned ^ set(self._committed)))})"
            )
        state = executor.migrate(targets, plan=reverse_plan)
        self._committed = []
        self._post_migrate_after_reverse(state, reverse_plan)

    def _post_migrate_after_reverse(self, state, reverse_plan) -> None:
        """post_migrate as `migrate` sends it (migration checksums of the reversed steps are dropped), to
        every receiver even when one fails: a handler written for forward migrations may query a table
        the reversal has just dropped (wagtail's snippet permissions, auth's create_permissions after
        contenttypes went back to zero). The schema is back either way, and the footprint check after
        recovery decides that; a handler's failure is a warning, never "recovery failed"."""
        for app_config in global_apps.get_app_configs():
            if app_config.models_module is None:
                continue
            responses = post_migrate.send_robust(
                sender=app_config,
                app_config=app_config,
                verbosity=0,
                interactive=False,
                using=self.using,
                apps=state.apps,
                plan=reverse_plan,
            )
            for receiver, result in responses:
                if isinstance(result, Exception):
                    _reset_connection(self.connection)  # a failed statement must not poison the next one
                    name = f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', receiver)}"
                    self._warn(
                        f"post_migrate handler {name} failed for {app_config.label} after reversing "
                        f"({first_line(result)}); the schema was reversed"
                    )

    def _observe_reverse(self, action: str, migration=None, fake: bool = False) -> None:
        if action in ("apply_success", "unapply_success"):
            label = f"{migration.app_label}.{migration.name}"
            self.summary.reversed.append(label)
            self._event("reversed", revision=label)
            self.say(f"  reversed {label}")

    def _restore_or_refuse(self, backup: backups.BackupManifest | None, message: str, reason: str) -> None:
        """Reversing failed or is impossible: the backup is all that is left, and it costs other clients'
        writes since it was taken, so it is restored only with --allow-data-loss."""
        if backup is None:
            raise RecoveryFailed(f"{message}; reversing failed ({reason}) and no pre-migrate backup exists")
        if not self.options.allow_data_loss:
            raise RecoveryFailed(
                f"{message}; reversing the applied migrations failed ({reason}). Restoring backup {backup.name} "
                f"would discard what was written since it was taken ({self._writes_since(backup)}): "
                f"rerun with --allow-data-loss to restore it, or restore by hand from {backup.path}"
            )
        self._restore_after_failure(backup, f"{message}; reversing failed ({reason})")

    def _writes_since(self, backup: backups.BackupManifest) -> str:
        """How much the backup would discard: server write counters and changed row counts."""
        try:
            now = self.engine.row_counts()
            writes = backups.writes_since(backup, self.engine)
        except DatabaseError as exc:
            return f"unknown: {first_line(exc)}"
        parts = []
        if not writes.unknown:
            parts.append(f"{writes.total} row writes counted by the server, the migration's own included")
        if writes.reset_tables:
            parts.append(f"{', '.join(writes.reset_tables)}: {backups.STATISTICS_RESET}")
        changed = [
            f"{t} {n}->{now.get(t)}"
            for t, n in sorted(backup.tables.items())
            if t not in BOOKKEEPING_TABLES and now.get(t) != n
        ]
        if changed:
            parts.append("row counts changed: " + ", ".join(changed[:10]))
        return "; ".join(parts) or "no change of row counts seen"

    def _restore_after_failure(self, backup: backups.BackupManifest, message: str) -> None:
        self.say(f"Failed: {message}. Restoring backup {backup.name} (--allow-data-loss) ...")
        self._phase_name = "restore"
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
        """After recovery, what the plan could change (schema, django_migrations) equals the pre-state.

        Row counts are not compared: other clients' inserts and deletes are theirs, not the plan's.
        """
        _reset_connection(self.connection)
        problems = before.footprint.differences(footprint.capture(self.using)) if before.footprint else []
        if problems:
            where = f": restore by hand from backup {backup.name}" if backup else ""
            raise RecoveryFailed(f"the database is NOT as before after recovery ({'; '.join(problems)}){where}")
        self._event("recovered", rollback=self.summary.rollback)

    def _clear_caches(self) -> None:
        # Content types created by a rolled-back post_migrate must not linger in the cache.
        ContentType.objects.clear_cache()

    def _prune(self) -> None:
        try:
            removed = backups.prune_backups(keep=settings.BACKUP_KEEP, reasons={"pre-migrate", "pre-restore"})
        except OSError as exc:  # the migration is committed: a pruning problem is a warning
            self.say(f"Warning: pruning old backups failed: {exc}")
            return
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


def _targets_for(executor: MigrationExecutor, applied: dict[str, list[str]], apps: set[str]) -> list[tuple]:
    """Per app, the migrate targets that put it back where ``applied`` (the pre-state) had it."""
    graph = executor.loader.graph
    targets: list[tuple[str, str | None]] = []
    for app in sorted(apps):
        names = set(applied.get(app, []))
        leaves = [
            (app, name)
            for name in sorted(names)
            if (app, name) in graph.node_map
            and not any(child[0] == app and child[1] in names for child in graph.node_map[(app, name)].children)
        ]
        targets += leaves or [(app, None)]
    return targets


def _brief(result: CheckResult) -> str:
    text = result.details.get("summary") or str(result.details)
    return text if len(text) <= 300 else text[:297] + "..."


__all__ = ["MigrationSummary", "SafeMigrateOptions", "SafeMigration"]
