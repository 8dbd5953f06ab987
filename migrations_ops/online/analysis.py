"""The online plan: each operation of a migration plan, how ``--online`` runs it, or why it cannot.

Pure reading, like planning.py: the SQL of every schema operation is collected from Django's
schema editor (``collect_sql``) and classified statement by statement (statements.py); data
operations must be declared batchable (:class:`~migrations_ops.operations.RunSQLBatched`) or
bounded (:class:`~migrations_ops.operations.BoundedRunPython`), or, in a migration the project
cannot rewrite, reviewed in ``MIGRATION_ONLINE_DECLARATIONS`` (declarations.py). A plan with any
refusal is refused as a whole, before anything runs (exit 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import connections, migrations
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.migration import Migration
from django.db.models import NOT_PROVIDED

from migrations_ops.errors import first_line
from migrations_ops.online import declarations, facts
from migrations_ops.online.declarations import Declaration
from migrations_ops.online.expand_contract import BACKFILL, Context, Unsupported, WindowPlan, window_plan
from migrations_ops.online.statements import CONCURRENT, SKIP, VALIDATE, Refused, Statement, plan_statements
from migrations_ops.operations import BoundedRunPython, RunSQLBatched
from migrations_ops.planning import MigrationPlan, db_table

SCHEMA = "schema"
BATCHED = "batched"
BOUNDED = "bounded"
WINDOW = "window"  # expand now, contract at --complete (expand_contract/)


@dataclass
class OnlineOperation:
    revision: str
    index: int
    description: str
    kind: str  # SCHEMA, BATCHED or BOUNDED
    statements: list[Statement] = field(default_factory=list)
    refusal: str | None = None
    batch_table: str | None = None
    window: WindowPlan | None = None
    declared: Declaration | None = None  # the reviewed declaration it runs under (declarations.py)
    declared_as: str | None = None  # declarations.BOUNDED or BRIEF
    later: bool = False  # on a table this run creates: its SQL is written when it runs

    def to_dict(self) -> dict[str, Any]:
        document: dict[str, Any] = {"operation": self.index, "description": self.description, "kind": self.kind}
        if self.statements:
            document["statements"] = [statement.to_dict() for statement in self.statements]
        if self.batch_table:
            document["batched_over"] = self.batch_table
        if self.window:
            document["contract"] = self.window.to_dict()
        if self.declared:
            document["declared"] = self.declared.as_used(self.declared_as)
        if self.later:
            document["planned_when_it_runs"] = True
        if self.refusal:
            document["refused"] = self.refusal
        return document

    def render(self) -> list[str]:
        lines = [f"    [{self.index}] {self.description}"]
        if self.refusal:
            return [*lines, f"        REFUSED: {self.refusal}"]
        if self.kind == BATCHED:
            batches = f"        backfill in key-range batches over {self.batch_table} (row locks, one batch at a time)"
            return [*lines, batches]
        if self.kind == BOUNDED and self.declared:
            declared = self.declared
            return [
                *lines,
                f"        one transaction under the lock timeout: declared {self.declared_as} by "
                f"{declared.reviewed_by} ({declared.reason})",
            ]
        if self.kind == BOUNDED:
            return [*lines, "        one short transaction (declared bounded)"]
        if self.later:
            return [*lines, "        a table this run creates: catalog changes, written when it runs"]
        shown = []
        for statement in self.statements:
            if statement.mode == SKIP:
                continue
            if statement.mode == BACKFILL:
                shown.append(f"        backfill in batches over {statement.table}: {statement.note} (row locks)")
                continue
            scan = " scans without blocking writes;" if statement.mode in (CONCURRENT, VALIDATE) else ""
            note = f" ({statement.note})" if statement.note else ""
            line = f"        {statement.lock}:{scan} {statement.table or ''}{note}"
            if line not in shown:
                shown.append(line)
        lines += shown or ["        no SQL (the models' state only)"]
        if self.window:
            lines += [f"        window: {note}" for note in self.window.notes]
            lines += [f"        at --complete, {s.lock}: {s.table} ({s.note})" for s in self.window.complete]
        return lines


@dataclass
class OnlinePlan:
    plan: MigrationPlan
    operations: dict[str, list[OnlineOperation]]  # revision -> operations, plan order
    existing_tables: set[str]

    @property
    def refusals(self) -> list[str]:
        return [
            f"{op.revision} operation {op.index} ({op.description}): {op.refusal}"
            for ops in self.operations.values()
            for op in ops
            if op.refusal
        ]

    @property
    def declarations(self) -> list[dict[str, Any]]:
        """Every reviewed declaration the plan runs under, with the operations it covers (audited)."""
        used = []
        for revision, ops in self.operations.items():
            declared = [op for op in ops if op.declared]
            if declared:
                keys = (declarations.BOUNDED, declarations.BRIEF)
                covered = {key: [op.index for op in declared if op.declared_as == key] for key in keys}
                used.append(declarations.record(revision, declared[0].declared, covered))
        return used

    def to_dict(self) -> dict[str, Any]:
        return {
            "migrations": [
                {"revision": revision, "operations": [op.to_dict() for op in ops]}
                for revision, ops in self.operations.items()
            ],
            "refusals": self.refusals,
            "declarations": self.declarations,
        }

    def render(self) -> str:
        lines = ["Online plan (each step its own short transaction; the application keeps running):"]
        for revision, ops in self.operations.items():
            lines.append(f"  {revision}")
            for op in ops:
                lines += op.render()
        refusals = self.refusals
        verdict = f"Refused: {len(refusals)} operation(s) cannot run online" if refusals else "All can run online."
        lines.append(verdict)
        return "\n".join(lines)


def analyse(using: str, plan: MigrationPlan, existing_tables: set[str] | None = None) -> OnlinePlan:
    """How --online would run ``plan`` on ``using`` (``existing_tables``: as the run started)."""
    connection = connections[using]
    if existing_tables is None:
        with connection.cursor() as cursor:
            existing_tables = set(connection.introspection.table_names(cursor))
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    declarations.read(loader)  # a malformed declaration is bad input before anything is analysed
    operations: dict[str, list[OnlineOperation]] = {}
    for step in plan.steps:
        if step.backwards:
            operations[step.revision] = [
                OnlineOperation(step.revision, 0, step.description, SCHEMA, refusal=_BACKWARDS)
            ]
            continue
        operations[step.revision] = operation_plans(using, loader, step.migration, existing_tables)
    _refuse_renames_beside_other_windows([op for ops in operations.values() for op in ops])
    return OnlinePlan(plan=plan, operations=operations, existing_tables=existing_tables)


def _refuse_renames_beside_other_windows(operations: list[OnlineOperation]) -> None:
    """A window's statements name their tables: a table renamed in the same window would make the
    other operations' complete and rollback statements name a view. One deploy each."""
    windows = [op for op in operations if op.window and not op.refusal]
    for rename in [op for op in windows if op.window.kind == "rename_model"]:
        names = {s.table for s in [*rename.window.expand, *rename.window.complete]}
        for other in windows:
            touched = {s.table for s in [*other.window.expand, *other.window.complete]}
            if other is not rename and touched & names:
                other.refusal = (
                    f"changes {', '.join(sorted(touched & names))}, which {rename.revision} operation {rename.index} "
                    "renames in the same window: complete one window before the other (two deploys)"
                )


_BACKWARDS = "the online path runs forward plans only: go back with --online --abort or without --online"


def operation_plans(
    using: str, loader: MigrationLoader, migration: Migration, existing: set[str]
) -> list[OnlineOperation]:
    """Each operation of ``migration`` as the online path runs it (statements generated now)."""
    revision = f"{migration.app_label}.{migration.name}"
    state = loader.project_state((migration.app_label, migration.name), at_end=False)
    plans, declarable = [], {}
    for index, operation in enumerate(migration.operations):
        new_state = state.clone()
        operation.state_forwards(migration.app_label, new_state)
        planned = _operation_plan(using, revision, index, operation, migration.app_label, state, new_state, existing)
        if planned.refusal:
            obstacle = declarations.obstacle(operation, migration.app_label, state, existing)
            key = declarations.key_for(operation)
            declaration = declarations.declared(revision, index, key)
            if declaration is None:
                declarable[index] = (key, obstacle)
            elif obstacle is None:  # the RunPython branch took its own already; a reviewed brief operation
                _as_declared(planned, declaration, key)
                planned.refusal = None
            elif key == declarations.BRIEF:
                by = declaration.reviewed_by
                planned.refusal += f"; declared brief by {by}, but no declaration can cover it: {obstacle}"
        plans.append(planned)
        state = new_state
    if declarable:
        _advise(revision, plans, declarable)
    return plans


def _as_declared(planned: OnlineOperation, declaration: Declaration, key: str) -> OnlineOperation:
    """``planned`` as one transaction under the lock timeout, as reviewed (the online strategy's _bounded)."""
    planned.kind, planned.declared, planned.declared_as = BOUNDED, declaration, key
    planned.statements, planned.window, planned.batch_table = [], None, None
    return planned


def _advise(revision: str, plans: list[OnlineOperation], declarable: dict[int, tuple[str, str | None]]) -> None:
    """Each undeclared refusal names the declaration that would accept it (one for the whole migration,
    to copy once reviewed), or, where none could, says so; a package's migration is named as such."""
    wanted: dict[str, list[int]] = {}
    for index, (key, obstacle) in declarable.items():
        if obstacle is None:
            wanted.setdefault(key, []).append(index)
    owner = declarations.owner(revision)
    suggestion = declarations.suggestion(revision, wanted) if wanted else ""
    for index, (_key, obstacle) in declarable.items():
        planned = plans[index]
        if obstacle is None and owner.project:
            planned.refusal += f"; or declare it reviewed: {suggestion}"
        elif obstacle is None:
            planned.refusal += (
                f"; {revision} comes from {owner.label}, so it cannot be rewritten here: declare it reviewed "
                f"({declarations.SETTING} in the settings): {suggestion}, or run this migration without --online"
            )
        elif not owner.project:
            planned.refusal += (
                f"; {revision} comes from {owner.label} and no declaration can cover it ({obstacle}): run this "
                "migration without --online"
            )


def _operation_plan(using, revision, index, operation, app_label, state, new_state, existing) -> OnlineOperation:
    described = OnlineOperation(revision, index, operation.describe(), SCHEMA)
    if isinstance(operation, RunSQLBatched):
        key = operation.batch_key()
        described.kind = BATCHED if key else BOUNDED
        described.batch_table = key.table if key else None
        return described
    bounded = isinstance(operation, BoundedRunPython)
    if bounded or (isinstance(operation, migrations.RunPython) and _app_is_new(state, app_label, existing)):
        # Declared small, or in an app this run installs (its tables are new and empty, and no running
        # code uses them yet): one short transaction. A failure later in the run undoes it by its reverse.
        if not operation.reversible:
            described.refusal = (
                f"a {'BoundedRunPython' if bounded else 'RunPython'} without a reverse: a failure after it could "
                "not be undone (give it reverse_code; migrations.RunPython.noop when there is nothing to undo)"
            )
        else:
            described.kind = BOUNDED
        return described
    if isinstance(operation, migrations.RunPython):
        # Reviewed by the operator (declarations.py): one transaction under the lock timeout.
        declaration = declarations.declared(revision, index, declarations.BOUNDED)
        obstacle = declarations.obstacle(operation, app_label, state, existing)
        if declaration is not None and obstacle is None:
            return _as_declared(described, declaration, declarations.BOUNDED)
        if declarations.owner(revision).project:
            described.refusal = (
                "a RunPython the online path cannot batch: write it as migrations_ops.operations.RunSQLBatched, "
                "or BoundedRunPython when it touches a small fixed number of rows"
            )
        else:
            described.refusal = "a RunPython the online path cannot batch"
        if declaration is not None:
            described.refusal += f"; declared bounded by {declaration.reviewed_by}, but {obstacle}"
        return described
    context = Context(using, revision, index, operation, app_label, state, new_state, existing)
    window = _window_operation(described, context)
    if window is not None:  # a change both releases survive only in two halves: expand now, contract later
        return window
    if isinstance(operation, migrations.AddField) and _breaks_old_inserts(operation, app_label, new_state, existing):
        # Django adds such a column with a temporary default and then drops it: old code's INSERTs
        # that do not name the column would fail from then on.
        described.refusal = (
            f"adds NOT NULL column {operation.name} without a database default: code that predates it cannot "
            "insert rows (give the field db_default=...)"
        )
        return described
    try:
        raw = collect_sql(using, operation, app_label, state, new_state)
        described.statements = [s for sql in raw for s in plan_statements(sql, existing, facts.probe(using))]
    except Refused as exc:
        described.refusal = str(exc)
    except Exception as exc:  # Django could not write the SQL (e.g. it introspects a table not made yet)
        table = _model_table(operation, app_label, state, new_state)
        if table is not None and table not in existing:
            # Made by an earlier operation of this run: empty and unused, every statement on it runs as
            # it is, and its SQL is written when it runs (the strategy plans each migration at its turn).
            described.later = True
        else:
            described.refusal = f"cannot tell what it does ({first_line(exc)})"
    return described


def _window_operation(described: OnlineOperation, ctx: Context) -> OnlineOperation | None:
    """The operation as an expand/contract pair, a refusal when it cannot be split, or None."""
    try:
        planned = window_plan(ctx)
    except Unsupported as exc:
        described.refusal = str(exc)
        return described
    except Refused as exc:
        described.refusal = str(exc)
        return described
    if planned is None:
        return None
    described.kind, described.statements, described.window = WINDOW, planned.expand, planned
    return described


def _model_table(operation, app_label: str, state, new_state) -> str | None:
    """The table of the model ``operation`` changes, or None when it names no model."""
    key = getattr(operation, "model_name_lower", None) or getattr(operation, "name_lower", None)
    if key is None:
        return None
    return db_table(new_state, app_label, key) or db_table(state, app_label, key)


def _breaks_old_inserts(operation, app_label: str, state, existing: set[str]) -> bool:
    table = db_table(state, app_label, operation.model_name_lower)
    field = operation.field
    return table in existing and not field.null and field.db_default is NOT_PROVIDED and not field.many_to_many


def _app_is_new(state, app_label: str, existing: set[str]) -> bool:
    tables = {db_table(state, app, name) for app, name in state.models if app == app_label}
    return not (tables & existing)


def collect_sql(using: str, operation, app_label: str, state, new_state) -> list[str]:
    """The statements Django's schema editor writes for ``operation`` (nothing runs)."""
    with connections[using].schema_editor(collect_sql=True, atomic=False) as editor:
        operation.database_forwards(app_label, editor, state, new_state)
    return list(editor.collected_sql)
