"""``safe_migrate --online``: the plan in short steps while the application keeps running.

The same envelope as the transactional path (lock, plan, preflight validation, a verified
backup, validation afterwards, audit log, MigrationRun), and in between, migration by migration:

1. *expand*: each schema statement in its own transaction under MIGRATION_ONLINE_LOCK_TIMEOUT,
   retried with exponential backoff and jitter within MIGRATION_ONLINE_RETRY_BUDGET (a waiting
   ALTER queues the application behind it, so the small timeout bounds the application's wait);
   indexes CONCURRENTLY, constraints NOT VALID (statements.py);
2. *backfill*: RunSQLBatched operations in key-range batches, each its own transaction that also
   writes the checkpoint; paused while a standby lags;
3. *validate*: VALIDATE CONSTRAINT for what was added NOT VALID; then the migration's
   django_migrations row, in the checkpoint's transaction.

Any failure or interruption undoes what the run did (drops what it added, reverses its data
changes in batches): the database is as before, with no restore, so no write of the application
is lost. After a SIGKILL, ``--resume`` continues from the checkpoint and ``--abort`` undoes it.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.conf import settings
from django.core.management.sql import emit_post_migrate_signal
from django.db import DatabaseError, transaction
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django.db.migrations.recorder import MigrationRecorder

from migrations_ops.errors import BadInput, OperationFailed, RecoveryFailed, first_line
from migrations_ops.interrupts import Interrupted
from migrations_ops.online import checkpoint
from migrations_ops.online.analysis import BATCHED, BOUNDED, WINDOW, OnlinePlan, analyse, operation_plans
from migrations_ops.online.checkpoint import OnlineRun, OnlineRunState, refuse_during_window, window_summary
from migrations_ops.online.expand_contract import BACKFILL
from migrations_ops.online.governor import REPLICA_LAG, Governor, Limits
from migrations_ops.online.statements import CONCURRENT, SKIP, VALIDATE, Statement, inverse, validation_statement
from migrations_ops.operations import BatchKey, RunSQLBatched
from migrations_ops.pipeline.core import interrupt_guard, reset_connection
from migrations_ops.pipeline.snapshot import StateSnapshot
from migrations_ops.pipeline.strategy import Strategy
from migrations_ops.pipeline.summary import MigrationSummary
from migrations_ops.planning import MigrationPlan, build_plan
from migrations_ops.timeouts import setting_seconds

T = TypeVar("T")
MIN_SPAN, MAX_SPAN = 1, 20_000  # pages per batch


class BatchCost:
    """How many pages a batch may walk and stay within the target, from the batches walked so far.

    Time alone misled: pages with nothing to change (rows a rename's backfill had moved to the end of
    the table) went by in milliseconds, the span grew 1.5x per batch to thousands of pages, and the
    first batch over rows to change then held their row locks for 4.4 s (1M rows, bench_expand_contract).
    So the span may not pass what a page costs when every row on it is changed. Every batch bounds
    both costs from above (it walked ``pages`` and changed ``changed`` rows in ``seconds``: a page
    costs at most seconds/pages, a changed row at most seconds/changed), and their sum per full page
    bounds the worst page. Until a batch has changed a row, and never below it, the bound is the
    first span: the pages of MIGRATION_ONLINE_BATCH_SIZE rows, the operator's batch.
    """

    def __init__(self, first_span: int, rows_per_page: float) -> None:
        self.first_span = first_span
        self.rows_per_page = rows_per_page
        self.per_page = float("inf")
        self.per_row = float("inf")

    def measured(self, pages: int, changed: int, seconds: float) -> None:
        if pages > 0:
            self.per_page = min(self.per_page, seconds / pages)
        if changed > 0:
            self.per_row = min(self.per_row, seconds / changed)

    def pages_within(self, seconds: float) -> int:
        if self.per_row == float("inf"):
            return self.first_span
        worst_page = self.per_page + self.per_row * self.rows_per_page
        return max(self.first_span, int(seconds / max(worst_page, 1e-9)))


@dataclass
class LockHold:
    table: str
    seconds: float
    statement: str


@dataclass
class OnlineSummary(MigrationSummary):
    """The summary of an online run: the contract's fields plus what the application felt."""

    online_plan: OnlinePlan | None = None
    run_id: int | None = None
    longest_lock: LockHold | None = None
    statements: int = 0
    batches: int = 0
    pages_walked: int = 0
    retries: int = 0
    pauses_s: dict[str, float] = field(default_factory=dict)  # by cause (online/governor.py CAUSES)
    undone: bool = False
    window: dict[str, Any] | None = None  # an expand/contract window this run opened or closed

    def to_dict(self) -> dict[str, Any]:
        document = super().to_dict()
        online: dict[str, Any] = {
            "window": self.window,
            "run_id": self.run_id,
            "statements": self.statements,
            "batches": self.batches,
            "pages_walked": self.pages_walked,
            "retries": self.retries,
            "replica_pauses_s": round(self.pauses_s.get(REPLICA_LAG, 0.0), 3),
            "pauses_s": {cause: round(seconds, 3) for cause, seconds in self.pauses_s.items()},
            "longest_lock_s": round(self.longest_lock.seconds, 4) if self.longest_lock else 0.0,
            "longest_lock": self.longest_lock.__dict__ if self.longest_lock else None,
            "undone": self.undone,
        }
        if self.online_plan is not None:
            online["plan"] = self.online_plan.to_dict()
        document["online"] = online
        return document

    def render_plan(self) -> str:
        online = f"\n{self.online_plan.render()}" if self.online_plan else ""
        return super().render_plan() + online

    def render(self) -> str:
        lines = []
        if self.statements or self.batches:
            hold = self.longest_lock
            held = f"{hold.seconds * 1000:.0f} ms on {hold.table}" if hold else "none"
            lines.append(
                f"Online: {self.statements} statement(s), {self.batches} batch(es) ({self.pages_walked} page(s) "
                f"walked), {self.retries} lock retr(ies); longest exclusive lock {held}"
            )
        return "\n".join([*lines, super().render()])


class OnlineStrategy(Strategy):
    """``safe_migrate --online`` (and its ``--resume`` / ``--abort``): the plan in short steps."""

    name = "online"

    def __init__(self, pipeline) -> None:
        super().__init__(pipeline)
        self.lock_timeout_s = setting_seconds("MIGRATION_ONLINE_LOCK_TIMEOUT")
        # The guard under every verdict: a write-blocking step that runs longer is cancelled and undone.
        self.statement_timeout_s = setting_seconds("MIGRATION_ONLINE_STATEMENT_TIMEOUT")
        self.retry_budget_s = setting_seconds("MIGRATION_ONLINE_RETRY_BUDGET")
        self.batch_target_s = setting_seconds("MIGRATION_ONLINE_BATCH_TARGET")
        self.limits = Limits.from_settings()  # refused here, before anything runs, when one is bad
        self.governor: Governor | None = None  # one per run (_drive): controls, back-off, progress
        self.batch_size = max(1, int(settings.MIGRATION_ONLINE_BATCH_SIZE))
        self._loader: MigrationLoader | None = None
        self._current: str | None = None
        self._own_before: dict[str, int] | None = None  # the run's own row changes before this transaction
        self._counters_at_start: dict[str, int] | None = None  # engine.own_row_changes() as it began

    @property
    def summary(self) -> OnlineSummary:
        return self.pipeline.summary  # what new_summary() made

    def new_summary(self) -> OnlineSummary:
        return OnlineSummary()

    # ------------------------------------------------------------------ entry points
    def review(self, plan: MigrationPlan) -> None:
        """``--plan --online``: the online plan; with ``--lint``, exit 1 when it would block the application."""
        self.engine.check_online_ready()
        online = analyse(self.using, plan)
        self.summary.online_plan = online
        if self.options.lint and online.refusals:
            self.summary.exit_code = 1
            self.summary.error = f"{len(online.refusals)} operation(s) would block the application: " + "; ".join(
                online.refusals
            )

    @property
    def loader(self) -> MigrationLoader:
        if self._loader is None:
            self._loader = MigrationLoader(self.connection, ignore_no_migrations=True)
        return self._loader

    def counts_rows(self) -> bool:
        """No: every transaction of the run counts its own row changes (``_counted``), and the analysis
        refuses what would truncate or rewrite a table, so the guard needs no count of the whole database."""
        return self.engine.own_row_changes() is None

    def check(self, plan: MigrationPlan) -> None:
        """PostgreSQL, no unfinished run, and every operation doable online; else refused, nothing changed."""
        self.engine.check_online_ready()
        if self._unfinished() is not None:
            raise BadInput(
                "an earlier online run on this database is unfinished: continue it with "
                "safe_migrate --online --resume, or undo it with --online --abort (nothing was changed)"
            )
        refuse_during_window(self.using, "a new --online run")
        online = analyse(self.using, plan)
        self.summary.online_plan = online
        if online.refusals:
            raise BadInput(
                f"cannot run online, nothing was changed: {len(online.refusals)} operation(s) would block the "
                "application: " + "; ".join(online.refusals)
            )
        for used in online.declarations:  # reviewed by a person, so audited: who, why, which operations
            self.pipeline.emit(
                "online_declaration",
                f"  {used['revision']}: runs under the declaration reviewed by {used['reviewed_by']} "
                f"({used['reason']})",
                declarations=[used],
            )

    def apply(self, plan: MigrationPlan, before: StateSnapshot, backup) -> None:
        online = self.summary.online_plan
        state = OnlineRunState(
            migrations=[step.revision for step in plan.steps],
            existing_tables=sorted(online.existing_tables),
            before={
                "row_counts": before.row_counts,
                "migrations": before.migrations,
                "storage": before.storage,
                "estimated": before.estimated,
            },
            own_changes=None if self.counts_rows() else {},  # counted where the engine can
            targets=[self.options.app_label, self.options.migration_name],
        )
        run = checkpoint.start(self.using, state, backup.name if backup else None)
        self.summary.run_id = run.id
        self.pipeline.emit(
            "online_start",
            f"Applying {len(plan.steps)} migration(s) online (run {run.id}): expand, backfill, validate",
            run_id=run.id,
            migrations=state.migrations,
        )
        self._drive(run, plan, before, resumed=False)

    def resume(self) -> None:
        self.engine.check_online_ready()
        run = self._unfinished()
        if run is None:
            raise BadInput("no unfinished online run to resume on this database (nothing was changed)")
        checkpoint.ensure_table(self.using)  # a run begun before progress and control were kept
        self.summary.run_id, self.summary.backup = run.id, run.backup
        app_label, migration_name = (run.state.targets + [None, None])[:2]
        plan = build_plan(self.using, app_label, migration_name)
        remaining = [revision for revision in run.state.migrations if revision not in run.state.done]
        if [step.revision for step in plan.steps] != remaining:
            raise BadInput(
                f"the migrations on disk no longer match online run {run.id} (it still has {', '.join(remaining)}): "
                "undo it with safe_migrate --online --abort (nothing was changed)"
            )
        self._refuse_what_is_now_refused(run, plan)
        self.summary.plan = self.pipeline.plan = plan
        before = StateSnapshot(
            migrations=run.state.before["migrations"],
            row_counts=run.state.before["row_counts"],
            storage=run.state.before.get("storage"),
            estimated=run.state.before.get("estimated", False),
        )
        self.pipeline.emit(
            "online_resume",
            f"Resuming online run {run.id} (pid {run.pid} on {run.host}, started {run.started_at}): "
            f"{len(run.state.done)} of {len(run.state.migrations)} migration(s) done",
            run_id=run.id,
            done=run.state.done,
            current=run.state.current,
        )
        self._drive(run, plan, before, resumed=True)
        self.pipeline.prune()

    def _refuse_what_is_now_refused(self, run: OnlineRun, plan: MigrationPlan) -> None:
        """A resumed run does not skip what the online path would refuse today (a declaration removed,
        a migration edited): nothing more runs; the operator restores it or aborts."""
        online = analyse(self.using, plan, set(run.state.existing_tables))
        current = run.state.current
        refused = [
            f"{op.revision} operation {op.index} ({op.description}): {op.refusal}"
            for ops in online.operations.values()
            for op in ops
            if op.refusal and not (op.revision == current.get("revision") and op.index < current.get("operation", 0))
        ]
        if refused:
            raise BadInput(
                f"online run {run.id} cannot go on: {len(refused)} operation(s) it has yet to run are refused now: "
                + "; ".join(refused)
                + ". Restore what changed (a declaration in the settings?), or undo the run with safe_migrate "
                "--online --abort (nothing was changed)"
            )

    def abort(self) -> None:
        self.engine.check_online_ready()
        run = self._unfinished() or checkpoint.open_window(self.using)
        if run is None:
            raise BadInput("no unfinished online run or open window to abort on this database (nothing was changed)")
        if run.status == checkpoint.COMPLETING:
            raise BadInput(
                f"window {run.id} is being completed (its contract half has begun, and what it dropped cannot come "
                "back): finish it with safe_migrate --online --complete (nothing was changed)"
            )
        self.summary.run_id, self.summary.backup = run.id, run.backup
        self.pipeline.emit(
            "online_abort",
            f"Aborting online run {run.id}: undoing {len(run.state.started_ops)} migration(s) step by step",
            run_id=run.id,
            done=run.state.done,
            current=run.state.current,
        )
        with interrupt_guard(self.engine.cancel_running_statement):
            self._undo(run, checkpoint.ABORTED)
        self.summary.status = "aborted"
        self.pipeline.say("Aborted: the database is back at the migrations it had before the run.")

    def complete(self) -> None:
        """``--online --complete``: the contract half of an open window, once the old release is gone.

        Each operation's contract is one short transaction under the lock timeout and the guard,
        recorded in the checkpoint in the same transaction (a killed --complete continues where it
        stopped). A verified backup first: what it drops cannot be undone step by step.
        """
        self.engine.check_online_ready()
        if self._unfinished() is not None:
            raise BadInput(
                "an earlier online run on this database is unfinished: continue it with safe_migrate --online "
                "--resume, or undo it with --online --abort (nothing was changed)"
            )
        run = checkpoint.open_window(self.using)
        if run is None:
            raise BadInput("no open expand/contract window to complete on this database (nothing was changed)")
        self.summary.run_id = run.id
        self.summary.window = window_summary(run)
        self.pipeline.preflight()
        if self.pipeline.take_backup and run.status == checkpoint.EXPANDED:
            self.summary.backup = self.pipeline.safety_point().name
        run.status = checkpoint.COMPLETING
        with transaction.atomic(using=self.using):
            checkpoint.save(self.using, run)
        self.pipeline.emit(
            "window_complete_start",
            f"Completing window {run.id}: the contract half of {len(run.state.window)} operation(s)",
            run_id=run.id,
        )
        with interrupt_guard(self.engine.cancel_running_statement), self.pipeline.phase("complete"):
            for position, entry in enumerate(run.state.window):
                if position not in run.state.contracted:
                    self._contract(run, position, entry)
        self.pipeline.clear_caches()
        with self.pipeline.phase("validate"):
            self.pipeline.validate_schema("after --complete (the window stays open: run --online --complete again)")
        run.status = checkpoint.DONE
        run.state.completed_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        with transaction.atomic(using=self.using):
            checkpoint.save(self.using, run)
        self.summary.window = window_summary(run)
        self.summary.status = "completed"
        self.pipeline.emit(
            "window_closed", f"Completed: window {run.id} is closed.", run_id=run.id, longest_lock=self._longest()
        )

    def _contract(self, run: OnlineRun, position: int, entry: dict[str, Any]) -> None:
        """One operation's contract statements, each its own transaction; the last one records it."""
        statements = [Statement(**data) for data in entry["complete"]]
        for number, statement in enumerate(statements):

            def attempt(statement: Statement = statement, last: bool = number == len(statements) - 1) -> float:
                with transaction.atomic(using=self.using):
                    self._set_local_lock_timeout()
                    started = time.monotonic()
                    with self._guarded(statement.sql, True), self.connection.cursor() as cursor:
                        cursor.execute(statement.sql)
                    if last:
                        run.state.contracted.append(position)
                        checkpoint.save(self.using, run)
                return time.monotonic() - started

            held = self._retrying(statement.sql, attempt)
            self._note_lock(statement.table or "", held, statement.sql)
            self.summary.statements += 1
        self.pipeline.say(f"  completed {entry['revision']} [{entry['operation']}] {entry['description']}")

    def _window_entry(self, run: OnlineRun, revision: str, index: int) -> dict[str, Any] | None:
        return next((e for e in run.state.window if e["revision"] == revision and e["operation"] == index), None)

    def _unfinished(self) -> OnlineRun | None:
        return checkpoint.unfinished(self.using)

    # ------------------------------------------------------------------ the run
    def _drive(self, run: OnlineRun, plan: MigrationPlan, before: StateSnapshot, resumed: bool) -> None:
        try:
            with interrupt_guard(self.engine.cancel_running_statement):
                with self.pipeline.phase("migrate"):
                    for revision in run.state.migrations:
                        if revision not in run.state.done:
                            self._apply_migration(run, self._migration(revision))
                    self._post_migrate(run, plan)
                with self.pipeline.phase("validate"):
                    self.pipeline.validate(plan, before, run.state.own_changes)
                # Validated: the run is complete whatever arrives now (a signal past this point must
                # not leave a finished run reported "interrupted", exit 1, with its checkpoint open).
                self.pipeline.interrupts.decide()
        except (Exception, Interrupted) as exc:
            self._collect_pauses()
            # As the transactional path says it: "interrupted by SIGTERM during migrate", not a bare
            # "SIGTERM"; a lost connection or a lock conflict named as such.
            message = self.pipeline.describe_failure(exc)
            self.summary.error = message
            self.pipeline.emit(
                "failed",
                f"Failed: {message}. Undoing the online run step by step (no restore) ...",
                error=message,
                path="online",
            )
            # Undoing has begun: a second signal must not abandon it.
            self.pipeline.interrupts.decide()
            self._undo(run, checkpoint.FAILED)
            self.summary.status = "rolled_back"
            self.summary.rollback = "online"
            self.summary.undone = True
            self.summary.applied = []
            raise OperationFailed(
                f"{message}; undone online: the database is as it was before (no restore: no write of the "
                "application was lost)"
            ) from None
        self._collect_pauses()
        run.status = checkpoint.EXPANDED if run.state.window else checkpoint.DONE
        with transaction.atomic(using=self.using):
            checkpoint.save(self.using, run)
        self.summary.status = "resumed" if resumed else "online_applied"
        if run.state.window:
            self.summary.status = "expanded"
            self.summary.window = window_summary(run)
            self.pipeline.emit(
                "window_open",
                f"Expanded: window {run.id} is open ({len(run.state.window)} operation(s) wait for their contract "
                "half). Both releases work now: deploy the new release, then run safe_migrate --online --complete "
                "(or --online --abort to go back).",
                run_id=run.id,
                window=self.summary.window,
            )
        self.pipeline.emit("online_end", run_id=run.id, longest_lock=self._longest())

    def _migration(self, revision: str) -> Migration:
        app_label, name = revision.split(".", 1)
        return self.loader.get_migration(app_label, name)

    def _apply_migration(self, run: OnlineRun, migration: Migration) -> None:
        revision = f"{migration.app_label}.{migration.name}"
        started = time.monotonic()
        self._current = revision
        existing = set(run.state.existing_tables)
        plans = operation_plans(self.using, self.loader, migration, existing)
        current = run.state.current if run.state.current.get("revision") == revision else {}
        first = current.get("operation", 0)
        validations = [tuple(item) for item in current.get("validate", [])]
        for index, op_plan in enumerate(plans):
            if index < first:
                continue
            if op_plan.refusal:  # resume() refuses this first; never skip an operation silently
                raise OperationFailed(f"{revision} operation {index} cannot run online: {op_plan.refusal}")
            if index > first or not current:
                current = {"revision": revision, "operation": index, "statement": 0, "validate": validations}
                current["statements"] = [statement.__dict__ for statement in op_plan.statements]
                run.state.current = current
            operation = migration.operations[index]
            if op_plan.kind == WINDOW and not self._window_entry(run, revision, index):
                # Stored before its first statement: --abort and a failure undo it from here.
                run.state.window.append(
                    {
                        "revision": revision,
                        "operation": index,
                        "description": op_plan.description,
                        **op_plan.window.stored(),
                    }
                )
            if op_plan.kind == BATCHED:
                self._backfill(run, revision, index, operation)
            elif op_plan.kind == BOUNDED:
                judged = (
                    f"declared {op_plan.declared_as} by {op_plan.declared.reviewed_by}"
                    if op_plan.declared
                    else "declared bounded"
                )
                self._bounded(run, migration, index, backwards=False, judged=judged)
            else:
                self._statements(run, revision, index)
            validations = [tuple(item) for item in run.state.current.get("validate", [])]
        for table, constraint in validations:
            self._run(run, validation_statement(table, constraint), revision, None)
        with transaction.atomic(using=self.using):
            MigrationRecorder(self.connection).record_applied(migration.app_label, migration.name)
            run.state.done.append(revision)
            run.state.current = {}
            checkpoint.save(self.using, run)
        elapsed = time.monotonic() - started
        self.pipeline.step_durations[revision] = elapsed
        self.summary.applied.append(revision)
        self.pipeline.emit(
            "migration",
            f"  applied {revision} online ({elapsed:.2f}s)",
            revision=revision,
            direction="applied",
            duration_s=round(elapsed, 4),
            online=True,
        )

    def _statements(self, run: OnlineRun, revision: str, index: int) -> None:
        current = run.state.current
        statements = [Statement(**data) for data in current["statements"]]
        for position in range(current.get("statement", 0), len(statements)):
            statement = statements[position]
            validate = [*current.get("validate", []), *statement.validates]

            def advance(position: int = position, validate: list = validate) -> None:
                current["statement"], current["validate"] = position + 1, validate

            if statement.mode == SKIP:
                advance()
                continue
            if statement.mode == BACKFILL:
                batched = RunSQLBatched([statement.sql], key=BatchKey(statement.table))
                self._backfill(run, revision, index, batched)
                current.pop("block", None), current.pop("span", None)
                advance()
                with transaction.atomic(using=self.using):
                    checkpoint.save(self.using, run)
                continue
            self._run(run, statement, revision, index, advance)

    def _run(
        self, run: OnlineRun, statement: Statement, revision: str, index: int | None, advance=lambda: None
    ) -> None:
        """One statement under the online lock timeout, retried; the checkpoint moves with it."""

        def record() -> None:
            advance()  # absolute values: a retried attempt sets the same ones
            if index is not None:
                run.state.started_ops[revision] = max(run.state.started_ops.get(revision, 0), index + 1)
            self._count(run)
            checkpoint.save(self.using, run)

        if statement.mode == CONCURRENT:
            self._retrying(statement.sql, lambda: self._concurrently(statement))
            with self._counted(run):
                record()
        else:
            blocks_writes = statement.lock.startswith(("ACCESS EXCLUSIVE", "SHARE ROW EXCLUSIVE"))

            def attempt() -> float:
                with self._counted(run):
                    self._set_local_lock_timeout()
                    started = time.monotonic()
                    with self._guarded(statement.sql, blocks_writes), self.connection.cursor() as cursor:
                        cursor.execute(statement.sql)
                    record()
                return time.monotonic() - started  # ACCESS EXCLUSIVE is held until this commit

            held = self._retrying(statement.sql, attempt)
            if statement.table and blocks_writes and statement.table in run.state.existing_tables:
                self._note_lock(statement.table, held, statement.sql)
        self.summary.statements += 1

    def _concurrently(self, statement: Statement) -> None:
        if statement.creates_index:
            state = self.engine.index_state(statement.creates_index)
            if state == "valid":
                return  # built before a crash, recorded after it: nothing to do
            if state == "invalid":  # a failed earlier build leaves an INVALID index: rebuild it
                self._autocommit(f'DROP INDEX CONCURRENTLY IF EXISTS "{statement.creates_index}"')
        try:
            self._autocommit(statement.sql)
        except DatabaseError:
            if statement.creates_index and self.engine.index_state(statement.creates_index) == "invalid":
                self._autocommit(f'DROP INDEX CONCURRENTLY IF EXISTS "{statement.creates_index}"')
            raise

    def _autocommit(self, sql: str) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = %s", [f"{max(1, int(self.lock_timeout_s * 1000))}ms"])
            try:
                cursor.execute(sql)
            finally:
                cursor.execute("RESET lock_timeout")

    def _set_local_lock_timeout(self) -> None:
        self.engine.set_lock_timeout(self.lock_timeout_s)

    def _retrying(self, what: str, attempt: Callable[[], T]) -> T:
        """``attempt()`` until it does not hit a transient conflict, with exponential backoff and jitter."""
        deadline = time.monotonic() + self.retry_budget_s
        delay = 0.05
        while True:
            try:
                return attempt()
            except DatabaseError as exc:
                if not self.engine.is_transient(exc) or time.monotonic() + delay > deadline:
                    if self.engine.is_transient(exc):
                        raise OperationFailed(
                            f"gave up after {self.retry_budget_s:g}s of lock conflicts ({first_line(exc)}) on: "
                            f"{what[:120]}"
                        ) from exc
                    raise
                self.summary.retries += 1
                pause = delay * random.uniform(0.5, 1.5)
                self.pipeline.emit("online_retry", statement=what[:200], wait_s=round(pause, 3), error=first_line(exc))
                time.sleep(pause)
                delay = min(delay * 2, 5.0)

    def _note_lock(self, table: str, seconds: float, sql: str) -> None:
        self.pipeline.exclusive_locks[table] = max(self.pipeline.exclusive_locks.get(table, 0.0), seconds)
        longest = self.summary.longest_lock
        if longest is None or seconds > longest.seconds:
            self.summary.longest_lock = LockHold(table, seconds, sql[:200])

    def _longest(self) -> dict[str, Any] | None:
        return self.summary.longest_lock.__dict__ if self.summary.longest_lock else None

    # ------------------------------------------------------------------ data changes
    def _backfill(
        self, run: OnlineRun, revision: str, index: int | None, operation: RunSQLBatched, backwards: bool = False
    ) -> None:
        """Walk the table in page ranges, one transaction each, then catch up once over the whole table."""
        key = operation.batch_key(backwards)
        statements = operation.statements(self.connection.vendor, backwards)
        current = run.state.current
        if key is None:  # declared bounded: one short transaction
            self._retrying(statements[0], lambda: self._batch(run, revision, index, statements, "TRUE"))
            return
        block = int(current.get("block", 0))
        first_span, per_page = self._initial_span(key)
        span = int(current.get("span") or first_span)
        cost = BatchCost(first_span, per_page)
        governor = self._governor(run)
        governor.start_walk(revision, index, key.table, self._pages(key), block)
        while block < (end := self._pages(key)):
            governor.set_total(end)
            governor.before_batch()
            upto = min(block + span, end)
            predicate = f"({key.ctid} >= '({block},0)'::tid AND {key.ctid} < '({upto},0)'::tid)"
            current["block"], current["span"] = upto, span
            elapsed, changed = self._retrying(
                statements[0], lambda p=predicate: self._batch(run, revision, index, statements, p)
            )
            self.summary.batches += 1
            self.summary.pages_walked += upto - block
            cost.measured(upto - block, changed, elapsed)
            span = self._next_size(span, elapsed, cost.pages_within(self.batch_target_s))
            governor.retries, governor.longest_lock_s = self.summary.retries, self._longest_s()
            governor.after_batch(upto - block, changed, elapsed, span)
            block = upto
        # Rows the application updated during the walk may have moved to pages already walked.
        self._retrying(statements[0], lambda: self._batch(run, revision, index, statements, "TRUE"))

    def _batch(
        self, run: OnlineRun, revision: str, index: int | None, statements: list[str], predicate: str
    ) -> tuple[float, int]:
        """One batch in its own transaction: (seconds, rows its statements changed)."""
        started = time.monotonic()
        changed = 0
        with self._counted(run):
            self._set_local_lock_timeout()
            if predicate != "TRUE":  # a page range: few rows (the final catch-up reads the whole table)
                self.engine.plan_for_small_batches()
                # A batch lost to a crash is lost with its checkpoint and walked again on --resume, so
                # its commit need not wait for a flush of its own (the application's commits still wait
                # on the disk's: bench/README.md, expand/contract).
                self.engine.commit_without_flush()
            with self.connection.cursor() as cursor:
                for sql in statements:
                    cursor.execute(sql.replace("{batch}", predicate), ())
                    changed += max(cursor.rowcount, 0)
            if index is not None:
                run.state.started_ops[revision] = max(run.state.started_ops.get(revision, 0), index + 1)
            self._count(run)
            checkpoint.save(self.using, run)
        return time.monotonic() - started, changed

    def _pages(self, key: BatchKey) -> int:
        """The table's size in pages now (rows appended during the walk land on new pages)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_relation_size(%s::regclass) / current_setting('block_size')::int",
                [self.connection.ops.quote_name(key.table)],
            )
            return int(cursor.fetchone()[0])

    def _initial_span(self, key: BatchKey) -> tuple[int, float]:
        """Pages holding about MIGRATION_ONLINE_BATCH_SIZE rows, and rows per page (the planner's estimate)."""
        with self.connection.cursor() as cursor:
            cursor.execute(
                "SELECT reltuples, relpages FROM pg_class WHERE oid = %s::regclass",
                [self.connection.ops.quote_name(key.table)],
            )
            tuples, pages = cursor.fetchone()
        per_page = tuples / pages if pages and tuples > 0 else 50.0
        return max(MIN_SPAN, int(self.batch_size / per_page)), per_page

    def _next_size(self, span: int, elapsed: float, ceiling: int = MAX_SPAN) -> int:
        """Keep each batch near the target duration: the application waits at most one batch for a row.

        Proportional, but never more than 1.5x larger or 2x smaller at once: a page range of the
        same size can take much longer further on (denser pages, colder cache), and a doubling
        overshot the target at 4M rows. Growth is at least one page: 1.5 pages round down to 1, and a
        span that one stall had halved to a single page stayed there for the rest of the table (23,390
        batches instead of about 700 in one 1M-row run).
        """
        wanted = span * self.batch_target_s / max(elapsed, 1e-3)
        grown = max(span * 1.5, span + 1)
        return max(MIN_SPAN, min(MAX_SPAN, ceiling, int(min(grown, max(span / 2, wanted)))))

    @contextmanager
    def _counted(self, run: OnlineRun) -> Iterator[None]:
        """One transaction of the run's work, inside which ``_count(run)`` runs before the checkpoint is
        saved: the session's row counters are read as it begins, and if it does not commit, the run's
        own row changes are as they were."""
        self._own_before = run.state.own_changes
        try:
            with transaction.atomic(using=self.using):
                self._counters_at_start = self.engine.own_row_changes()
                yield
        except BaseException:
            run.state.own_changes = self._own_before
            raise

    def _count(self, run: OnlineRun) -> None:
        """The run's own row changes: those before this transaction (``_counted``) plus its own so far
        (absolute, so calling it again in the same transaction counts nothing twice)."""
        if self._own_before is None:
            return
        changes = self.engine.own_row_changes_since(self._counters_at_start)
        if changes is None:
            run.state.own_changes = None
            return
        total = dict(self._own_before)
        for table, delta in changes.items():
            total[table] = total.get(table, 0) + delta
        run.state.own_changes = total

    def _governor(self, run: OnlineRun) -> Governor:
        if self.governor is None or self.governor.run_id != run.id:
            self.governor = Governor(self.engine, self.using, run.id, self.pipeline.emit, self.limits)
        return self.governor

    def _collect_pauses(self) -> None:
        if self.governor is not None:
            self.summary.pauses_s = dict(self.governor.pauses_s)

    def _longest_s(self) -> float:
        return self.summary.longest_lock.seconds if self.summary.longest_lock else 0.0

    def _bounded(
        self, run: OnlineRun, migration: Migration, index: int, backwards: bool, judged: str = "declared bounded"
    ) -> None:
        revision = f"{migration.app_label}.{migration.name}"
        operation = migration.operations[index]
        if isinstance(operation, RunSQLBatched):
            self._backfill(run, revision, index, operation, backwards)
            return
        before_state, after_state = self._states(migration, index)

        def attempt() -> None:
            # Bounded by declaration only: the guard holds if the declaration is wrong.
            guard = self._guarded(operation.describe(), True, judged)
            with self._counted(run), self.connection.schema_editor(atomic=True) as editor, guard:
                self._set_local_lock_timeout()
                if backwards:
                    operation.database_backwards(migration.app_label, editor, after_state, before_state)
                else:
                    operation.database_forwards(migration.app_label, editor, before_state, after_state)
                if not backwards:
                    run.state.started_ops[revision] = max(run.state.started_ops.get(revision, 0), index + 1)
                    self._count(run)
                    checkpoint.save(self.using, run)

        # Not reported as a lock hold: what it locks is its own business (often rows it inserts); the
        # guard bounds it whatever it takes.
        self._retrying(operation.describe(), attempt)

    def _states(self, migration: Migration, index: int):
        state = self.loader.project_state((migration.app_label, migration.name), at_end=False)
        for operation in migration.operations[:index]:
            operation.state_forwards(migration.app_label, state)
        after = state.clone()
        migration.operations[index].state_forwards(migration.app_label, after)
        return state, after

    def _post_migrate(self, run: OnlineRun, plan: MigrationPlan) -> None:
        """Content types, permissions and migration checksums, as `migrate` creates them at its end; in one
        transaction, so that what its receivers change is counted as the run's own."""
        migrations = [(self._migration(step.revision), False) for step in plan.steps]
        apps = self.loader.project_state([key for key in plan.targets if key[1]]).apps
        with self._counted(run):
            emit_post_migrate_signal(0, False, self.using, apps=apps, plan=migrations)
            self._count(run)
            checkpoint.save(self.using, run)

    # ------------------------------------------------------------------ undo
    def _undo(self, run: OnlineRun, final_status: str) -> None:
        """Undo everything ``run`` did, newest first, each step short; RecoveryFailed if it cannot."""
        try:
            self._reset()
            for revision in reversed(run.state.migrations):
                started = run.state.started_ops.get(revision, 0)
                if not started and revision not in run.state.done:
                    continue
                migration = self._migration(revision)
                partial = run.state.current if run.state.current.get("revision") == revision else {}
                for index in reversed(range(started)):
                    entry = self._window_entry(run, revision, index)
                    if entry is not None:  # expand/contract: its rollback holds any part of its expand
                        run.state.current = {"revision": revision, "operation": index, "undo": True}
                        self._rollback_window(run, revision, entry)
                    elif partial and index == partial.get("operation") and self._is_partial(partial):
                        self._undo_partial(partial)
                    else:
                        self._reverse(run, migration, index)
                    run.state.started_ops[revision] = index
                    if partial and index == partial.get("operation"):
                        run.state.current = {}
                    with transaction.atomic(using=self.using):
                        checkpoint.save(self.using, run)
                self._drop_invalid_leftovers(partial)
                with transaction.atomic(using=self.using):
                    if revision in run.state.done:
                        MigrationRecorder(self.connection).record_unapplied(migration.app_label, migration.name)
                        run.state.done.remove(revision)
                    run.state.started_ops.pop(revision, None)
                    if run.state.current.get("revision") == revision:
                        run.state.current = {}
                    checkpoint.save(self.using, run)
                self.pipeline.say(f"  undid {revision}")
            run.status = final_status
            with transaction.atomic(using=self.using):
                checkpoint.save(self.using, run)
        except (Exception, Interrupted) as exc:
            self.pipeline.emit("online_undo_failed", run_id=run.id, error=first_line(exc))
            raise RecoveryFailed(
                f"undoing online run {run.id} failed ({first_line(exc)}); its checkpoint is kept: run "
                f"safe_migrate --online --abort to finish undoing it"
                + (f", or restore by hand from backup {run.backup}" if run.backup else "")
            ) from None
        self.pipeline.clear_caches()
        self.pipeline.emit("online_undone", run_id=run.id, status=final_status)

    def _rollback_window(self, run: OnlineRun, revision: str, entry: dict[str, Any]) -> None:
        """An operation's rollback statements, in order (each holds whatever part of the expand ran).

        A statement that the data refuses (an integrity violation: the new release deleted a row an
        old foreign key points at, or inserted a NULL the old NOT NULL forbids) is not forced: the
        rows of both releases stay, the constraint stays unenforced (NOT VALID, or the column
        nullable), and a warning names it for validate_db to list the rows.
        """
        for data in entry["rollback"]:
            statement = Statement(**data)
            blocks_writes = statement.mode != VALIDATE  # a VALIDATE scan lets the application write
            try:
                self._retrying(statement.sql, lambda s=statement, b=blocks_writes: self._in_transaction(s.sql, b))
                self.summary.statements += 1
            except DatabaseError as exc:
                if not self.engine.is_integrity_error(exc):
                    raise
                self.pipeline.warn(
                    f"{revision} [{entry['operation']}]: the old schema's constraint cannot hold the rows written "
                    f"meanwhile, so it is left unenforced ({first_line(exc)}): run validate_db to list the rows"
                )
        run.state.window.remove(entry)

    def _reset(self) -> None:
        """A failed statement may have left the connection mid-transaction or gone: start clean."""
        reset_connection(self.connection)

    @staticmethod
    def _is_partial(current: dict[str, Any]) -> bool:
        statements = current.get("statements") or []
        return bool(statements) and current.get("statement", 0) < len(statements)

    def _undo_partial(self, current: dict[str, Any]) -> None:
        done = [Statement(**data) for data in current["statements"][: current.get("statement", 0)]]
        for statement in reversed(done):
            undo = inverse(statement)
            if undo is not None:
                if undo.mode == CONCURRENT:
                    self._retrying(undo.sql, lambda u=undo: self._autocommit(u.sql))
                else:
                    self._retrying(undo.sql, lambda u=undo: self._in_transaction(u.sql))
                self.summary.statements += 1

    def _drop_invalid_leftovers(self, current: dict[str, Any]) -> None:
        """A concurrent index build killed midway leaves an INVALID index behind: drop it."""
        for data in current.get("statements") or []:
            name = data.get("creates_index")
            if name and self.engine.index_state(name) == "invalid":
                self._retrying(name, lambda n=name: self._autocommit(f'DROP INDEX CONCURRENTLY IF EXISTS "{n}"'))

    def _in_transaction(self, sql: str, blocks_writes: bool = True) -> None:
        with transaction.atomic(using=self.using):
            self._set_local_lock_timeout()
            with self._guarded(sql, blocks_writes), self.connection.cursor() as cursor:
                cursor.execute(sql)

    @contextmanager
    def _guarded(self, sql: str, blocks_writes: bool, judged: str = "judged a catalog change") -> Iterator[None]:
        """The guard under the verdict: in a transaction, a step that holds a write-blocking lock runs
        under statement_timeout, so a step misjudged as a catalog change (it rewrites or scans) is
        cancelled and rolled back, and the application waits at most that long for it."""
        timeout = self.statement_timeout_s
        if not blocks_writes or timeout <= 0:
            yield
            return
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT set_config('statement_timeout', %s, true)", [f"{max(1, int(timeout * 1000))}ms"])
        try:
            yield
        except DatabaseError as exc:
            if self.engine.is_cancelled(exc) and not self.pipeline.interrupts.received:
                raise OperationFailed(
                    f"the guard cancelled a step that held a write-blocking lock for more than {timeout:g}s "
                    f"(MIGRATION_ONLINE_STATEMENT_TIMEOUT; it was {judged}): {first_line(sql)[:160]}"
                ) from exc
            raise

    def _reverse(self, run: OnlineRun, migration: Migration, index: int) -> None:
        operation = migration.operations[index]
        revision = f"{migration.app_label}.{migration.name}"
        if isinstance(operation, RunSQLBatched):
            run.state.current = {"revision": revision, "operation": index, "undo": True}
            self._backfill(run, revision, None, operation, backwards=True)
            return
        before_state, after_state = self._states(migration, index)

        def attempt() -> None:
            with self.connection.schema_editor(atomic=True) as editor, self._guarded(operation.describe(), True):
                self._set_local_lock_timeout()
                operation.database_backwards(migration.app_label, editor, after_state, before_state)

        self._retrying(operation.describe(), attempt)


__all__ = ["OnlineStrategy", "OnlineSummary"]
