"""The transactional strategy: the plan through Django's own ``migrate``, in one transaction or in segments.

The plan is split into segments (planning.py): consecutive atomic migrations run in ONE transaction,
a non-atomic migration (atomic = False, CONCURRENTLY) runs alone. An all-atomic plan is one segment,
so the whole plan and the validation after it are one transaction and a failure is a ROLLBACK.
When a plan has several segments and one fails, the failing segment rolls back (or, non-atomic,
its completed operations are reversed) and the committed ones are reversed by Django, each
migration in its own transaction: other clients' writes are kept. Only when reversing is impossible
or fails is the pre-migrate backup restored, and only with --allow-data-loss (writes since the
backup are lost); otherwise the run stops with exit 4 naming the backup.

The plan is applied by Django's own `migrate` command (so pre/post_migrate signals, content types
and permissions behave exactly as under `migrate`), observed through its progress callback, which
also opens and commits the segments' transactions.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps as global_apps
from django.core.management import call_command
from django.core.management.commands.migrate import Command as MigrateCommand
from django.db import transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration
from django.db.migrations.recorder import MigrationRecorder
from django.db.models.signals import post_migrate
from django.db.utils import DatabaseError

from migrations_ops import backups, footprint
from migrations_ops.errors import OperationFailed, RecoveryFailed, first_line
from migrations_ops.interrupts import Interrupted
from migrations_ops.online.checkpoint import refuse_during_window
from migrations_ops.pipeline.core import progress_of, reset_connection
from migrations_ops.pipeline.snapshot import StateSnapshot
from migrations_ops.pipeline.strategy import Strategy
from migrations_ops.planning import TRANSACTION, MigrationPlan, Segment
from migrations_ops.retry import with_retries
from migrations_ops.status import BOOKKEEPING_TABLES
from migrations_ops.timeouts import lock_timeout


class StepFailed(Exception):
    """A migration (or the check right after it) failed; carries the migration's label."""


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


class TransactionalStrategy(Strategy):
    """Apply the plan with Django's migrate, one transaction per segment; undo by ROLLBACK, by reverse
    migrations, or (with --allow-data-loss) by restoring the pre-migrate backup."""

    name = "transactional"

    def __init__(self, pipeline) -> None:
        super().__init__(pipeline)
        self._lock_seen: dict[str, float] = {}
        self._step_started = 0.0
        self._transactional = False
        self._current: str | None = None
        # The segments' state while applying (see _observe).
        self._segment_of: dict[str, Segment] = {}
        self._tx: Any = None  # the open transaction.atomic of an atomic segment
        self._tx_segment: Segment | None = None
        self._tx_steps: list[str] = []
        self._committed: list[str] = []
        self._partial: _Partial | None = None
        self._own_changes: dict[str, int] | None = None  # None: the guard compares row counts
        self._counts_at_step: dict[str, int] = {}
        self._counters_at_start: dict[str, int] | None = None  # engine.own_row_changes() as the segment began

    # ------------------------------------------------------------------ apply
    def check(self, plan: MigrationPlan) -> None:
        """An open expand/contract window serves two releases with its triggers and views: migrating
        past it would leave them, or drop what they rely on."""
        if plan.steps:
            refuse_during_window(self.using, "migrating")

    def apply(self, plan: MigrationPlan, before: StateSnapshot, backup: backups.BackupManifest | None) -> None:
        self._transactional = plan.rollback_path == TRANSACTION
        self._segment_of = {step.revision: segment for segment in plan.segments for step in segment.steps}
        self._own_changes = {}  # the segments count their own row changes (where the engine can)
        self.pipeline.say(
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
            message = self.pipeline.describe_failure(exc)
            self.summary.error = message
            self.pipeline.emit("failed", error=message, path=plan.rollback_path, committed=self._committed)
            # Recovery has begun: a second signal must not abandon it, nor relabel its outcome.
            self.pipeline.interrupts.decide()
            self._recover(before, backup, message)
            self.summary.applied = []
            raise OperationFailed(
                f"{message}; rolled back ({self.summary.rollback}), the database is as it was before"
            ) from None
        # The final COMMIT is done: the run is applied whatever arrives now (a signal between this
        # point and the end of the run once made a complete upgrade exit 1, "interrupted").
        self.pipeline.interrupts.decide()
        self.pipeline.interrupts.end_deferral()  # the span begun just before that COMMIT
        self._finish_applied()

    def _finish_applied(self) -> None:
        self.summary.status = "applied"
        checks = len(self.summary.validation.checks) if self.summary.validation else 0
        self.pipeline.emit(
            "committed",
            f"Validation: {checks} checks passed ({self.summary.durations.get('validate_s', 0.0):.2f}s); committed.",
            applied=self.summary.applied,
        )
        if self.pipeline.interrupts.received:
            signal = self.pipeline.interrupts.received[0]
            self.pipeline.say(f"{signal} arrived after COMMIT: the migration is complete.")

    def _apply_attempt(self, plan: MigrationPlan, before: StateSnapshot) -> None:
        """Run what is left of the plan (a retry resumes after the committed segments)."""
        self.summary.applied = list(self._committed)
        self._lock_seen = {}
        try:
            with self.pipeline.phase("migrate"):
                self._run_migrate()
            with self.pipeline.phase("validate"):
                if self._tx is not None:
                    self.connection.check_constraints()
                self.pipeline.validate(plan, before, self._own_changes_so_far())
            # From the final COMMIT on the run is complete: signals are noted, not raised (ended in _apply).
            self.pipeline.interrupts.begin_deferral()
            try:
                self._commit_segment(final=True)
            except BaseException:
                self.pipeline.interrupts.end_deferral()
                raise
        except BaseException:
            self._rollback_segment()
            raise

    def _retryable(self, exc: BaseException) -> bool:
        """A lock timeout or deadlock in an atomic segment (rolled back whole) is worth another try."""
        return self._partial is None and self.engine.is_transient(exc)

    def _retrying(self, attempt: int, wait: float, exc: BaseException) -> None:
        self.pipeline.emit(
            "lock_timeout_retry",
            f"  {first_line(exc)}; retrying in {wait:.1f}s (attempt {attempt + 1})",
            attempt=attempt,
            wait_s=wait,
            error=first_line(exc),
        )

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
            # The session's counters as this transaction begins (they still hold earlier segments' rows).
            self._counters_at_start = self.engine.own_row_changes()
            # Every lock the segment's schema changes need, in one order: no deadlock with the application.
            self.engine.lock_tables(sorted({table for step in segment.steps for table in step.tables}))

    def _commit_segment(self, final: bool) -> None:
        if self._tx is None:
            return
        changes = self.engine.own_row_changes_since(self._counters_at_start)
        self._add_changes(changes)
        tx, self._tx = self._tx, None
        self.pipeline.interrupts.begin_deferral()  # COMMIT either happens or not; never "interrupted, yet committed"
        try:
            tx.__exit__(None, None, None)
        finally:
            self.pipeline.interrupts.end_deferral()
        commit_at = time.monotonic()  # locks are released at COMMIT, just above
        for table, since in self._lock_seen.items():
            self.pipeline.exclusive_locks[table] = max(self.pipeline.exclusive_locks.get(table, 0.0), commit_at - since)
        self._lock_seen = {}
        self._committed += self._tx_steps
        self._tx_steps = []
        self._tx_segment = None
        if not final:
            self.pipeline.interrupts.raise_if_interrupted()  # a signal during COMMIT: stop before the next segment

    def _rollback_segment(self) -> None:
        tx, self._tx = self._tx, None
        self._tx_segment = None
        self._tx_steps = []
        if tx is not None:
            with contextlib.suppress(Exception):  # _reset_connection below guarantees the ROLLBACK
                failure = RuntimeError("segment failed")
                tx.__exit__(type(failure), failure, None)
            if self.connection.in_atomic_block:
                reset_connection(self.connection)

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
                self.pipeline.exclusive_locks[table] = max(self.pipeline.exclusive_locks.get(table, 0.0), elapsed)
            self._finish_untracked(label)
        self.pipeline.step_durations[label] = elapsed
        direction = "unapplied" if action == "unapply_success" else "applied"
        self.summary.applied.append(label)
        self.pipeline.emit(
            "migration",
            f"  {direction} {label} ({elapsed:.2f}s)",
            revision=label,
            direction=direction,
            duration_s=round(elapsed, 4),
            fake=fake,
        )

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
            changes = {}
            for table, count in self._counts_at_step.items():
                # Under the name the step left it with (wagtailcore 0070 renames pagerevision to revision
                # outside a transaction: counted by its old name it "lost" every row); a table the step
                # dropped is the plan's drop, which the row-count guard judges.
                now = next((after[name] for name in self.pipeline.plan.table_names(table) if name in after), None)
                if now is not None:
                    changes[table] = now - count
            self._add_changes(changes)
        self._counts_at_step = {}

    def _tables_of(self, migration) -> list[str]:
        label = f"{migration.app_label}.{migration.name}"
        return next((step.tables for step in self.pipeline.plan.steps if step.revision == label), [])

    def _run_migrate(self) -> None:
        args, kwargs = self._migrate_kwargs()
        try:
            call_command(ObservedMigrate(self._observe), *args, **kwargs)
        except StepFailed:
            raise
        except Exception as exc:
            raise StepFailed(f"{self._current or 'the plan'} failed: {first_line(exc)}") from exc

    def _own_changes_so_far(self) -> dict[str, int] | None:
        """Rows the plan's own transactions added or removed per table (committed segments and the open
        one), where the engine counts them; None: the row-count guard compares row counts instead."""
        if self._own_changes is None:
            return None
        current = self.engine.own_row_changes_since(self._counters_at_start) if self._tx is not None else {}
        if current is None:
            return None
        own = dict(self._own_changes)
        for table, delta in current.items():
            own[table] = own.get(table, 0) + delta
        return own

    # ------------------------------------------------------------------ recovery
    def _recover(self, before: StateSnapshot, backup: backups.BackupManifest | None, message: str) -> None:
        """Undo the run: ROLLBACK what is open, reverse what committed, restore only as the last resort."""
        self.pipeline.phase_name = "recovery"
        self._rollback_segment()
        reset_connection(self.connection)
        self.pipeline.clear_caches()
        if not self._committed and self._partial is None:
            self.summary.rollback = "transaction"
            self.summary.status = "rolled_back"
            self.pipeline.say(f"Failed: {message}. Rolled back: the database is as it was.")
        else:
            try:
                self._reverse(before)
                self.pipeline.clear_caches()
                problems = before.footprint.differences(footprint.capture(self.using)) if before.footprint else []
                if problems:
                    raise OperationFailed("after reversing, " + "; ".join(problems))
                self.summary.rollback = "reverse"
                self.summary.status = "rolled_back"
                self.pipeline.say(
                    f"Failed: {message}. Reversed {len(self.summary.reversed)} migration(s), each in its own "
                    "transaction: the schema is as it was, other clients' writes are kept."
                )
            except Exception as exc:
                self.pipeline.emit("reverse_failed", error=first_line(exc))
                reset_connection(self.connection)
                self._restore_or_refuse(backup, message, first_line(exc))
        self._drop_created_recorder(before)
        self._verify_recovered(before, backup)

    def _drop_created_recorder(self, before: StateSnapshot) -> None:
        """A failed first run leaves the database as it found it: without the django_migrations table
        this run created (empty again after the rollback or reversal; one with rows stays)."""
        if not self.pipeline.created_recorder:
            return
        recorder = MigrationRecorder(self.connection)
        if recorder.has_table() and not recorder.migration_qs.exists():
            with self.connection.schema_editor() as editor:
                editor.delete_model(recorder.Migration)
            self.pipeline.emit("recorder_dropped", table=recorder.Migration._meta.db_table)
        if before.footprint is not None:
            table = recorder.Migration._meta.db_table
            before.footprint = dataclasses.replace(
                before.footprint, schema={t: v for t, v in before.footprint.schema.items() if t != table}
            )

    def _reverse(self, before: StateSnapshot) -> None:
        """Take back the failed non-atomic migration's completed operations, then every committed
        migration of this run through Django (each migration in its own transaction)."""
        self.pipeline.phase_name = "reverse"
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
                    reset_connection(self.connection)  # a failed statement must not poison the next one
                    name = f"{getattr(receiver, '__module__', '?')}.{getattr(receiver, '__qualname__', receiver)}"
                    self.pipeline.warn(
                        f"post_migrate handler {name} failed for {app_config.label} after reversing "
                        f"({first_line(result)}); the schema was reversed"
                    )

    def _observe_reverse(self, action: str, migration=None, fake: bool = False) -> None:
        if action in ("apply_success", "unapply_success"):
            label = f"{migration.app_label}.{migration.name}"
            self.summary.reversed.append(label)
            self.pipeline.emit("reversed", f"  reversed {label}", revision=label)

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
        self.pipeline.say(f"Failed: {message}. Restoring backup {backup.name} (--allow-data-loss) ...")
        self.pipeline.phase_name = "restore"
        try:
            with progress_of(self.pipeline.progress("restore")) as progress:
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
        self.pipeline.say(f"Restored {backup.name}. Writes made by other clients since the backup was taken are lost.")

    def _verify_recovered(self, before: StateSnapshot, backup) -> None:
        """After recovery, what the plan could change (schema, django_migrations) equals the pre-state.

        Row counts are not compared: other clients' inserts and deletes are theirs, not the plan's.
        """
        reset_connection(self.connection)
        problems = before.footprint.differences(footprint.capture(self.using)) if before.footprint else []
        if problems:
            where = f": restore by hand from backup {backup.name}" if backup else ""
            raise RecoveryFailed(f"the database is NOT as before after recovery ({'; '.join(problems)}){where}")
        self.pipeline.emit("recovered", rollback=self.summary.rollback)


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


__all__ = ["ObservedMigrate", "StepFailed", "TransactionalStrategy"]
