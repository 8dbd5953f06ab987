"""The safe_migrate pipeline: one run context and its phases, with the strategy that applies the plan.

    lock -> plan -> (strategy check) -> preflight -> safety point -> strategy apply (validates) -> prune
    around it all: the interrupt guard, the start and end events, the MigrationRun record

How the plan is applied and undone is the strategy's (the interface: strategy.py; the ways:
strategies/transactional.py, one transaction or segments; strategies/online.py, short online
steps). A strategy never subclasses the pipeline: it is handed the pipeline and uses its public
phases (``preflight``, ``safety_point``, ``validate``, ``prune``), its event stream and its run
state. ``run`` and ``migrate`` read top to bottom.

SIGINT/SIGTERM are handled from the first database call to the last (interrupts.py): the running
statement or child process is cancelled at once, and the phase that was running ends cleanly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.recorder import MigrationRecorder
from django.db.utils import DatabaseError

from migrations_ops import audit, backups, footprint, interrupts
from migrations_ops.backups import pitr
from migrations_ops.capacity import rewrite_warnings
from migrations_ops.checks import CheckResult, Problems
from migrations_ops.engines import get_engine
from migrations_ops.engines.base import current_owner
from migrations_ops.errors import BadInput, OperationFailed, OpsError, first_line
from migrations_ops.formatting import human_size
from migrations_ops.interrupts import Interrupted
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.pipeline.events import EventStream, audit_log, terminal
from migrations_ops.pipeline.snapshot import StateSnapshot
from migrations_ops.pipeline.strategy import Strategy
from migrations_ops.pipeline.summary import MigrationSummary
from migrations_ops.planning import MigrationPlan, build_plan
from migrations_ops.records import record_migration_run
from migrations_ops.row_guard import row_count_guard
from migrations_ops.status import applied_migrations
from migrations_ops.timeouts import lock_timeout
from migrations_ops.validation import ValidationReport, run_validation

Reporter = Callable[[str], None]
_BEFORE_APPLY = frozenset({"start", "lock", "plan", "preflight", "backup"})


class ValidationFailed(Exception):
    """The validation after migrating failed (the summary's ``validation`` holds the report)."""


class Pipeline:
    """One safe_migrate run against connection ``using``, applied by ``strategy``."""

    def __init__(
        self,
        using: str = DEFAULT_DB_ALIAS,
        options: SafeMigrateOptions | None = None,
        report: Reporter | None = None,
        *,
        strategy: type[Strategy] | None = None,
        take_backup: bool = True,
        take_lock: bool = True,
        confirm: Callable[[MigrationPlan], bool] | None = None,
        progress: Callable[[str], Any] | None = None,
        summary: MigrationSummary | None = None,
    ) -> None:
        self.using = using
        self.options = options or SafeMigrateOptions()
        self.take_backup = take_backup
        self.take_lock = take_lock
        self.confirm = confirm
        # progress("backup") -> a progress(done, total, item) callable with .finish(), or None
        self.progress = progress or (lambda label: None)
        self.engine = get_engine(using)
        self.events = EventStream()
        self.events.subscribe(audit_log("safe_migrate", self.engine.database_info))
        self.events.subscribe(terminal(report or (lambda line: None)))
        # How the plan is applied and undone; None for a caller that brings its own action (``execute``).
        self.strategy = strategy(self) if strategy is not None else Strategy(self)
        self.summary = summary if summary is not None else self.strategy.new_summary()
        self.plan: MigrationPlan | None = None
        self.phase_name = "start"  # the phase a failure is said to have happened in
        self.interrupts = interrupts.current()
        self.step_durations: dict[str, float] = {}  # per migration (the rehearsal reports them)
        self.exclusive_locks: dict[str, float] = {}  # per table, the longest ACCESS EXCLUSIVE hold seen
        self.created_recorder = False  # this run created django_migrations (a failed first run drops it)
        self._accepted_failures: dict[str, Problems] = {}

    # ------------------------------------------------------------------ the run, top to bottom
    def run(self) -> MigrationSummary:
        """The whole run; never raises for an operation failure: the summary says what happened."""
        if self.options.abort:
            return self.execute(lambda _plan: self.strategy.abort(), planned=False)
        if self.options.resume:
            return self.execute(lambda _plan: self.strategy.resume(), planned=False)
        if self.options.complete:
            return self.execute(lambda _plan: self.strategy.complete(), planned=False)
        return self.execute(self.migrate)

    def migrate(self, plan: MigrationPlan) -> None:
        """After lock and plan: the phases that change the database, in order."""
        self.strategy.check(plan)  # what this strategy cannot do is refused before anything changes
        before = self.preflight()
        backup = self.safety_point() if self.take_backup else None
        if self.options.dry_run:
            self.summary.status = "dry_run"
            self.say("Dry run: backup taken, nothing migrated.")
            return
        self.strategy.apply(plan, before, backup)  # applies and validates, or undoes and raises
        self.prune()

    def execute(self, action: Callable[[MigrationPlan | None], None], *, planned: bool = True) -> MigrationSummary:
        """Lock, plan and confirm, then ``action(plan)``; the start and end events and the MigrationRun
        record around it.

        ``run`` passes :meth:`migrate`; ``rehearsal.rehearse`` passes its work on a copy, so both share
        one lock, one plan and one audit trail. ``planned=False``: no plan is built and ``action(None)``
        runs (``--online --resume`` / ``--abort`` work from their checkpoint). SIGINT/SIGTERM are
        handled from before the first database call until the record is written: exit 1, nothing
        changed (or rolled back).
        """
        started = time.monotonic()
        with interrupts.handling_interrupts() as self.interrupts:
            self.emit("start", options={k: v for k, v in vars(self.options).items() if k != "allow_row_loss"})
            try:
                self.phase_name = "lock"
                with (
                    self.engine.hardened_session(lock_timeout()),
                    self.interrupts.cancellable(self.engine.cancel_running_statement),
                ):
                    lock = (
                        self.engine.migration_lock(current_owner("safe_migrate"))
                        if self.take_lock
                        else contextlib.nullcontext()
                    )
                    with lock:
                        plan = self.make_plan() if planned else None
                        if plan is not None or not planned:
                            action(plan)
            except OpsError as exc:
                self._fail(exc)
            except (Exception, Interrupted) as exc:
                # Before the apply phase nothing was changed (apply converts its own failures).
                unchanged = self.phase_name in _BEFORE_APPLY
                self._fail(OperationFailed(self.describe_failure(exc) + ("; nothing was changed" if unchanged else "")))
            # The outcome is decided: from here to the process's exit a signal is noted, never raised
            # (an outer guard, the command's, outlives this block).
            self.interrupts.decide()
            self.summary.durations["total_s"] = time.monotonic() - started
            self.emit(
                "end",
                status=self.summary.status,
                exit_code=self.summary.exit_code,
                applied=self.summary.applied,
                backup=self.summary.backup,
                rollback=self.summary.rollback,
                error=self.summary.error,
                durations=self.summary.durations,
                signals=list(self.interrupts.received),
            )
            self._record()
        return self.summary

    # ------------------------------------------------------------------ run context
    @property
    def connection(self):
        return connections[self.using]

    def emit(self, name: str, line: str | None = None, /, **fields: Any) -> None:
        """One event: ``line`` for the reader, ``name`` and ``fields`` for the audit log."""
        self.events.emit(name, line, **fields)

    def say(self, text: str) -> None:
        """A line only for the reader (the audit log has the fact in the events around it)."""
        self.events.emit("note", text, record=False)

    def warn(self, text: str) -> None:
        """A warning the operator must see: said, in the summary (--json) and in the audit log, once."""
        if text in self.summary.warnings:
            return
        self.summary.warnings.append(text)
        self.emit("warning", f"Warning: {text}", text=text)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time ``name`` into the summary's durations; a failure inside is said to happen during it."""
        started = time.monotonic()
        self.phase_name = name
        try:
            yield
        finally:
            self.summary.durations[f"{name}_s"] = self.summary.durations.get(f"{name}_s", 0.0) + (
                time.monotonic() - started
            )

    def snapshot(self, row_counts: dict[str, int] | None = None, estimated: bool = False) -> StateSnapshot:
        """The state before the plan; ``row_counts`` when just counted (validation counts every table)
        or ``estimated`` (the catalog's: the strategy counts its own row changes)."""
        if row_counts is None:
            row_counts = self.engine.estimated_row_counts() if estimated else self.engine.row_counts()
        return StateSnapshot(
            migrations=applied_migrations(self.using),
            row_counts=row_counts,
            footprint=footprint.capture(self.using),
            storage=self.engine.table_storage(),
            estimated=estimated,
        )

    def clear_caches(self) -> None:
        # Content types created by a rolled-back post_migrate must not linger in the cache.
        ContentType.objects.clear_cache()

    def describe_failure(self, exc: BaseException) -> str:
        """One line for a failure: the signal, a lost connection, a lock wait, or the error itself."""
        phase = self.phase_name
        if self.interrupts.received:
            return f"interrupted by {self.interrupts.received[0]} during {phase}"
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

    def _fail(self, exc: OpsError) -> None:
        self.summary.error = exc.message
        self.summary.exit_code = int(exc.exit_code)
        if self.summary.status not in ("rolled_back", "restored"):
            self.summary.status = "failed"

    # ------------------------------------------------------------------ phases
    def make_plan(self) -> MigrationPlan | None:
        """The plan, or None when there is nothing more to do (empty, or --plan)."""
        with self.phase("plan"):
            plan = build_plan(self.using, self.options.app_label, self.options.migration_name)
        self.plan = self.summary.plan = plan
        if not plan.empty:
            direction = "backwards" if plan.backwards else "forwards"
            self.say(f"Plan: {len(plan.steps)} migration(s) {direction}; rollback path: {plan.rollback_description}")
            for warning in rewrite_warnings(self.engine, plan):
                self.warn(warning)
        self.emit(
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
            self.strategy.review(plan)
            return None
        if plan.backwards and self.confirm is not None and not self.confirm(plan):
            raise BadInput("confirmation refused: nothing was changed")
        return plan

    def preflight(self) -> StateSnapshot:
        """Ready to migrate (engine, free space), valid as it is, and the state before, counted."""
        if not self.options.dry_run:
            # Django's migrate creates django_migrations before its first migration, outside our
            # transaction, and on SQLite its schema editor turns foreign-key checks back on, so the
            # first migration of an empty SQLite database failed ("schema editor cannot be used while
            # foreign key constraint checks are enabled") and recovery found the table left behind.
            # Created here, it is part of the state the backup and the after-failure check compare;
            # a failed run removes it again (recovery.drop_created_recorder): the database had no tables.
            recorder = MigrationRecorder(self.connection)
            self.created_recorder = not recorder.has_table()
            recorder.ensure_schema()
        with self.phase("preflight"):
            dump = pitr.kind() == pitr.DUMP  # a pgBackRest point needs no dump tools, nor room for a dump
            self.engine.check_ready_for_migration(backup_dir=settings.BACKUP_DIR, dump=dump)
            # Counting every table reads the whole database, however little the plan touches; a strategy
            # that counts its own row changes needs no count (at 15M untouched rows, most of preflight).
            exact = self.strategy.counts_rows()
            report = run_validation(using=self.using, count_rows=exact)
            if not report.ok:
                failing = {result.name: result.problems() for result in report.failures()}
                if not self.options.accept_existing_issues:
                    raise BadInput(
                        "the database fails validation before migrating: "
                        + ", ".join(sorted(failing))
                        + " (run validate_db for details; --accept-existing-issues to migrate anyway)"
                    )
                self._accepted_failures = failing
            # Validation has just counted every table: counting them again read the database twice.
            before = self.snapshot(row_counts=report.tables if exact else None, estimated=not exact)
        self.emit(
            "preflight",
            f"Preflight: ok ({len(report.checks)} checks, {len(before.row_counts)} tables "
            f"{'estimated' if before.estimated else 'counted'}, "
            f"{self.summary.durations.get('preflight_s', 0.0):.2f}s)",
            tables=before.row_counts,
            estimated=before.estimated,
            accepted_failures=sorted(self._accepted_failures),
            warnings=report.warnings(),
        )
        for warning in report.warnings():
            self.warn(warning)
        return before

    def safety_point(self) -> backups.BackupManifest:
        """The pre-migrate backup, verified before anything is migrated."""
        with self.phase("backup"), progress_of(self.progress("backup")) as progress:
            manifest = backups.create_backup(using=self.using, reason="pre-migrate", progress=progress)
            verification = backups.verify_backup(manifest.name, using=self.using)
            if not verification.ok:
                raise OperationFailed(
                    f"the pre-migrate backup {manifest.name} failed verification: "
                    + "; ".join(verification.failures())
                    + "; nothing was migrated"
                )
        self.summary.backup = manifest.name
        self.emit(
            "backup",
            f"Backup: {manifest.name} ({human_size(manifest.size_bytes)}, sha256 {manifest.sha256[:12]}...) "
            f"verified ({self.summary.durations.get('backup_s', 0.0):.2f}s)",
            name=manifest.name,
            sha256=manifest.sha256,
            size_bytes=manifest.size_bytes,
        )
        return manifest

    def validate(self, plan: MigrationPlan, before: StateSnapshot, own_changes: dict[str, int] | None) -> None:
        """Every check, plus the row-count guard; ValidationFailed when a check fails that did not fail
        the same way before (--accept-existing-issues). ``own_changes``: rows the plan's own
        transactions added or removed per table, where the engine counts them (None: compare counts)."""
        report = run_validation(using=self.using, count_rows=not before.estimated)
        # Estimated before: only which tables exist after matters (the plan's own row changes decide).
        exact = not before.estimated
        after = (report.tables or self.engine.row_counts()) if exact else self.engine.estimated_row_counts()
        report.checks.append(self._row_count_guard(plan, before, after, own_changes))
        self._judge(report, "after migrating")

    def validate_schema(self, when: str) -> None:
        """Every check, without the row-count guard (no plan: ``--online --complete`` drops what the
        window kept for the old release); ValidationFailed as :meth:`validate`."""
        self._judge(run_validation(using=self.using), when)

    def _judge(self, report: ValidationReport, when: str) -> None:
        # Accepted: a check that failed before with the same problems (by identity), none of them new.
        failures = [
            result
            for result in report.failures()
            if result.name not in self._accepted_failures
            or not result.problems().within(self._accepted_failures[result.name])
        ]
        self.summary.validation = report
        self.emit(
            "validate", ok=not failures, failures=[result.name for result in failures], warnings=report.warnings()
        )
        for warning in report.warnings():
            self.warn(warning)
        if failures:
            names = ", ".join(result.name for result in failures)
            raise ValidationFailed(f"validation failed {when}: {names} ({_brief(failures[0])})")

    def _row_count_guard(
        self, plan: MigrationPlan, before: StateSnapshot, after: dict[str, int], own_changes: dict[str, int] | None
    ) -> CheckResult:
        """No table that existed before lost rows, unless dropped by the plan or allowed; renamed
        tables are followed (row_guard.row_count_guard). A table whose storage the plan replaced
        (TRUNCATE, a rewrite) is judged by its rows: its own deletes do not count a TRUNCATE's."""
        replaced = set()
        now = self.engine.table_storage() if own_changes is not None else None
        if now is not None and before.storage is not None:
            renamed = plan.renamed_tables()
            replaced = {
                table for table, node in before.storage.items() if now.get(renamed.get(table, table), node) != node
            }
        return row_count_guard(
            plan,
            before.row_counts,
            after,
            own_changes,
            self.options.allow_row_loss,
            replaced=replaced,
            estimated=before.estimated,
        )

    def prune(self) -> None:
        """Automatic backups beyond BACKUP_KEEP go (the run is complete: a failure here is a warning)."""
        self.phase_name = "prune"  # still deferred: a few file deletions, never half a prune
        self.events.emit("prune_start", record=False)  # for subscribers that act as pruning begins
        try:
            removed = backups.prune_backups(keep=settings.BACKUP_KEEP, reasons={"pre-migrate", "pre-restore"})
        except OSError as exc:  # the migration is committed: a pruning problem is a warning
            self.warn(f"pruning old backups failed: {exc}")
            return
        if removed:
            self.emit("prune", removed=[getattr(m, "name", str(m)) for m in removed])

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


@contextlib.contextmanager
def progress_of(progress) -> Iterator[Any]:
    """Yield a progress callable (or None) and clear its line afterwards."""
    try:
        yield progress
    finally:
        if progress is not None:
            progress.finish()


@contextlib.contextmanager
def interrupt_guard(on_interrupt: Callable[[], None] | None = None) -> Iterator[None]:
    """The run's interrupt handling (interrupts.handling_interrupts) with ``on_interrupt`` as one more
    canceller for the block; inside ``execute`` it joins the guard already installed."""
    with interrupts.handling_interrupts() as state, state.cancellable(on_interrupt or (lambda: None)):
        yield


def reset_connection(connection) -> None:
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


__all__ = [
    "MigrationSummary",
    "Pipeline",
    "Reporter",
    "StateSnapshot",
    "ValidationFailed",
    "interrupt_guard",
    "progress_of",
    "reset_connection",
]
