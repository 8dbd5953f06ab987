"""What a safe_migrate run would do: targets, the plan, its rollback path and its effect per table.

Pure reading: nothing here changes the database. The target rules are `migrate`'s own
(`app_label [migration_name|zero]`, forwards or backwards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, connections, migrations
from django.db import connection as default_connection
from django.db.backends.utils import strip_quotes, truncate_name
from django.db.migrations.exceptions import AmbiguityError
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration
from django.db.migrations.state import ProjectState

from migrations_ops.errors import BadInput
from migrations_ops.shadow_tables import shadow_tables
from migrations_ops.status import describe_conflicts, describe_migration

TRANSACTION = "transaction"
REVERSE = "reverse"
RESTORE = "restore"


@dataclass
class PlanStep:
    app: str
    name: str
    backwards: bool
    description: str
    atomic: bool
    reversible: bool
    migration: Migration = field(repr=False)
    tables: list[str] = field(default_factory=list)

    @property
    def revision(self) -> str:
        return f"{self.app}.{self.name}"

    @property
    def undoable(self) -> bool:
        """Whether Django can take this step back once committed (a backwards step: by applying it again)."""
        return self.backwards or self.reversible

    def to_dict(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "direction": "backwards" if self.backwards else "forwards",
            "description": self.description,
            "atomic": self.atomic,
            "reversible": self.reversible,
            "tables": self.tables,
        }


@dataclass
class TableEffect:
    table: str
    created: bool = False
    dropped: bool = False
    columns_added: list[str] = field(default_factory=list)
    columns_removed: list[str] = field(default_factory=list)
    columns_altered: list[str] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    data_migrations: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v}

    def render(self) -> str:
        parts = [label for flag, label in ((self.created, "created"), (self.dropped, "DROPPED")) if flag]
        listed = (
            ("+columns ", self.columns_added),
            ("-columns ", self.columns_removed),
            ("altered columns ", self.columns_altered),
            ("indexes: ", self.indexes),
            ("constraints: ", self.constraints),
            ("data migrations (rows touched unknown until run): ", self.data_migrations),
        )
        parts += [prefix + ", ".join(values) for prefix, values in listed if values]
        return "; ".join(parts)


@dataclass(frozen=True)
class TableEvent:
    """What one operation does to a table's name, in the order the plan runs it: ``created``,
    ``dropped`` or ``renamed`` (``table`` becomes ``new_name``). Read from the project states before
    and after each operation: a model (or its auto-created many-to-many table) leaving the state is
    a drop, whichever operation removed it (DeleteModel, or a RunSQL / SeparateDatabaseAndState
    whose state operations delete it); a rename is what the schema editor renames
    (``alter_db_table``): RenameModel, AlterModelTable, and the auto-created many-to-many tables a
    RenameModel, AlterModelTable, RenameField or AlterField renames with them."""

    kind: str
    table: str
    new_name: str | None = None

    def undone(self) -> TableEvent:
        """The event a backwards step runs instead."""
        if self.kind == "renamed":
            return TableEvent("renamed", self.new_name or "", self.table)
        return TableEvent("dropped" if self.kind == "created" else "created", self.table)


@dataclass
class _TableHistory:
    """The plan's table events composed: per table that existed before the plan, its names in order."""

    names: dict[str, list[str]] = field(default_factory=dict)  # by the name before the plan
    dropped: set[str] = field(default_factory=set)  # names before the plan

    @classmethod
    def of(cls, events: list[TableEvent]) -> _TableHistory:
        history = cls()
        origin: dict[str, str | None] = {}  # current name -> name before the plan (None: the plan created it)
        for event in events:
            if event.kind == "created":
                origin[event.table] = None
                continue
            first = origin.pop(event.table, event.table)
            if first is None:
                if event.kind == "renamed":
                    origin[event.new_name] = None
            elif event.kind == "dropped":
                history.dropped.add(first)
            else:
                history.names.setdefault(first, [first]).append(event.new_name)
                origin[event.new_name] = first
        for first in history.dropped:
            history.names.pop(first, None)
        return history


@dataclass
class Segment:
    """Consecutive atomic steps run in ONE transaction; a non-atomic step runs alone.

    An atomic segment's own failure is always a ROLLBACK. ``rollback`` says how the segment is
    undone when a LATER segment fails after it committed: ``transaction`` (the plan is this one
    segment: nothing commits before the end), ``reverse`` (Django reverses its migrations, each in
    its own transaction) or ``restore`` (an irreversible step: only the backup can undo it).
    """

    steps: list[PlanStep]
    atomic: bool
    rollback: str

    def to_dict(self) -> dict[str, Any]:
        return {"steps": [step.revision for step in self.steps], "atomic": self.atomic, "rollback": self.rollback}

    def render(self, number: int) -> str:
        how = "one transaction" if self.atomic else "NON-ATOMIC, alone"
        undo = {
            TRANSACTION: "any failure rolls it back",
            REVERSE: "undone by reverse migrations if a later segment fails",
            RESTORE: "IRREVERSIBLE: a later failure needs the backup",
        }[self.rollback]
        return f"  segment {number}: {len(self.steps)} migration(s), {how}; {undo}"


def segment_steps(steps: list[PlanStep]) -> list[Segment]:
    """Split a plan into segments (see :class:`Segment`); one atomic segment is the whole-plan transaction."""
    groups: list[list[PlanStep]] = []
    for step in steps:
        if step.atomic and groups and groups[-1][-1].atomic:
            groups[-1].append(step)
        else:
            groups.append([step])
    if len(groups) == 1 and groups[0][0].atomic:
        return [Segment(groups[0], atomic=True, rollback=TRANSACTION)]
    return [
        Segment(group, atomic=group[0].atomic, rollback=REVERSE if all(s.undoable for s in group) else RESTORE)
        for group in groups
    ]


@dataclass
class MigrationPlan:
    targets: list[tuple[str, str | None]]
    steps: list[PlanStep]
    rollback_path: str  # TRANSACTION, REVERSE or RESTORE: the worst path any segment needs
    non_transactional_reasons: list[str]
    tables: dict[str, TableEffect]
    segments: list[Segment] = field(default_factory=list)
    # Every created, dropped and renamed table, in the order the plan runs (backwards steps undone).
    table_events: list[TableEvent] = field(default_factory=list)
    # SQLite: each virtual table's shadow tables before the plan (row_guard.shadow_tables).
    shadow_tables: dict[str, set[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def backwards(self) -> bool:
        return any(step.backwards for step in self.steps)

    def dropped_tables(self) -> set[str]:
        """Tables the plan drops, by their names before it (a table renamed and then dropped too)."""
        flagged = {name for name, effect in self.tables.items() if effect.dropped}
        return flagged | _TableHistory.of(self.table_events).dropped

    def renamed_tables(self) -> dict[str, str]:
        """Tables the plan renames and keeps: name before the plan -> name after it (a chain a -> b -> c
        is a -> c; forwards or backwards, as the plan runs)."""
        history = _TableHistory.of(self.table_events)
        return {first: names[-1] for first, names in history.names.items() if names[-1] != first}

    def table_names(self, table: str) -> list[str]:
        """Every name ``table`` (named as before the plan) has while the plan runs, the first first."""
        return _TableHistory.of(self.table_events).names.get(table, [table])

    @property
    def rollback_description(self) -> str:
        """The rollback path as the operator reads it (said once, on the runner's 'Plan:' line)."""
        reasons = "; ".join(self.non_transactional_reasons)
        return {
            TRANSACTION: "one transaction: any failure rolls back, no restore needed",
            REVERSE: f"{len(self.segments)} segments: a failure rolls back the running segment and reverses "
            f"the committed ones ({reasons})",
            RESTORE: f"{len(self.segments)} segments with an irreversible step: a failure after it needs the "
            f"pre-migrate backup ({reasons})",
        }[self.rollback_path]

    def render(self) -> str:
        """Human output: the segments (when more than one), each step with its flags, and the effect
        per table (the rollback path is on the 'Plan:' line printed before it)."""
        lines = (
            [segment.render(number) for number, segment in enumerate(self.segments, 1)]
            if len(self.segments) > 1
            else []
        )
        for step in self.steps:
            flags = [
                "backwards" if step.backwards else "forwards",
                "atomic" if step.atomic else "NON-ATOMIC",
                "reversible" if step.reversible else "IRREVERSIBLE",
            ]
            lines.append(f"  {step.revision}  [{', '.join(flags)}]")
            lines.append(f"      {step.description}")
        if self.tables:
            lines.append("Tables:")
            lines += [f"  {name}: {effect.render()}" for name, effect in sorted(self.tables.items())]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": [step.to_dict() for step in self.steps],
            "rollback_path": self.rollback_path,
            "segments": [segment.to_dict() for segment in self.segments],
            "non_transactional_reasons": self.non_transactional_reasons,
            "tables": {name: effect.to_dict() for name, effect in sorted(self.tables.items())},
        }


def resolve_targets(
    executor: MigrationExecutor, app_label: str | None = None, migration_name: str | None = None
) -> list[tuple[str, str | None]]:
    """`migrate`'s target rules; bad input raises BadInput (exit 2)."""
    loader = executor.loader
    conflicts = loader.detect_conflicts()
    if conflicts:
        raise BadInput(describe_conflicts({app: sorted(leaves) for app, leaves in sorted(conflicts.items())}))
    if app_label:
        try:
            global_apps.get_app_config(app_label)
        except LookupError:
            raise BadInput(f"no installed app with label {app_label!r}") from None
        if app_label not in loader.migrated_apps:
            raise BadInput(f"app {app_label!r} has no migrations")
    if app_label and migration_name:
        if migration_name == "zero":
            return [(app_label, None)]
        try:
            migration = loader.get_migration_by_prefix(app_label, migration_name)
        except AmbiguityError:
            raise BadInput(f"more than one migration of {app_label!r} matches {migration_name!r}") from None
        except KeyError:
            raise BadInput(f"no migration of {app_label!r} matches {migration_name!r}") from None
        return [(app_label, migration.name)]
    if app_label:
        return [key for key in loader.graph.leaf_nodes() if key[0] == app_label]
    return loader.graph.leaf_nodes()


def _non_transactional_reasons(migration: Migration) -> list[str]:
    """Why a migration cannot run inside one outer transaction (empty when it can).

    Inside an outer transaction Django silently ignores `atomic = False` for ordinary operations,
    so this must be decided from the plan before anything runs.
    """
    label = f"{migration.app_label}.{migration.name}"
    reasons = []
    if not migration.atomic:
        reasons.append(f"{label} is declared atomic = False")
    for operation in migration.operations:
        kind = type(operation).__name__
        if kind in {"AddIndexConcurrently", "RemoveIndexConcurrently"}:
            reasons.append(f"{label} uses {kind}")
        elif isinstance(operation, migrations.RunSQL):
            sql = operation.sql if isinstance(operation.sql, str) else " ".join(map(str, operation.sql))
            if "CONCURRENTLY" in sql.upper():
                reasons.append(f"{label} runs SQL with CONCURRENTLY")
        if isinstance(operation, migrations.RunPython) and operation.atomic is False:
            reasons.append(f"{label} has a RunPython with atomic=False")
    return reasons


def _is_reversible(migration: Migration) -> bool:
    return all(operation.reversible for operation in migration.operations)


def _table_effects(
    executor: MigrationExecutor, plan: list[tuple[Migration, bool]]
) -> tuple[dict[str, TableEffect], dict[str, list[str]], list[TableEvent]]:
    """The effect of the plan per table, the tables each migration touches, and the plan's table events."""
    effects: dict[str, TableEffect] = {}
    touched: dict[str, list[str]] = {}
    events: list[TableEvent] = []
    loader = executor.loader

    for migration, backwards in plan:
        key = (migration.app_label, migration.name)
        before = loader.project_state(key, at_end=False)
        after = loader.project_state(key, at_end=True)
        events += _migration_table_events(migration, backwards, before, after)
        label = f"{migration.app_label}.{migration.name}"
        tables = touched.setdefault(label, [])

        def effect(table: str, tables=tables) -> TableEffect:
            if not table.startswith("(") and table not in tables:
                tables.append(table)
            return effects.setdefault(table, TableEffect(table))

        for operation in migration.operations:
            _operation_effect(operation, migration.app_label, before, after, backwards, label, effect)
    for table_effect in effects.values():
        if table_effect.created or table_effect.dropped:
            # The table is new (or gone): its columns are part of that, not separate changes.
            table_effect.columns_added.clear()
            table_effect.columns_removed.clear()
            table_effect.columns_altered.clear()
    return effects, touched, events


def _model_tables(state: ProjectState, app_label: str, model_name: str, managed_only: bool) -> dict[str | None, str]:
    """The tables of one model in ``state`` as Django names them: the model's own (key None) and each
    auto-created many-to-many table (key: the field's name). Proxy models have none; with
    ``managed_only``, unmanaged models neither (the schema editor leaves their tables alone)."""
    model_state = state.models.get((app_label, model_name.lower()))
    options = model_state.options if model_state else {}
    if model_state is None or options.get("proxy") or (managed_only and not options.get("managed", True)):
        return {}
    # As django.db.models.Options and ManyToManyField name them (the default connection's name limit).
    limit = default_connection.ops.max_name_length()
    table = options.get("db_table") or truncate_name(f"{app_label}_{model_state.name_lower}", limit)
    tables: dict[str | None, str] = {None: table}
    for name, model_field in model_state.fields.items():
        if getattr(model_field, "many_to_many", False) and model_field.remote_field.through is None:
            tables[name] = model_field.db_table or truncate_name(f"{strip_quotes(table)}_{name}", limit)
    return tables


def _state_tables(state: ProjectState) -> set[str]:
    """Every table the models of ``state`` have (unmanaged ones included: a table whose model left the
    state and that is gone afterwards went with it)."""
    return {
        table
        for app_label, model_name in state.models
        for table in _model_tables(state, app_label, model_name, managed_only=False).values()
    }


def _renames_by(operation, app_label: str, before: ProjectState, after: ProjectState) -> list[tuple[str, str]]:
    """The tables the schema editor renames for ``operation`` (old, new): a model's table and its
    auto-created many-to-many tables (RenameModel, AlterModelTable), a many-to-many table whose field
    is renamed or given another db_table (RenameField, AlterField); only the database operations of
    a SeparateDatabaseAndState count."""
    ops = migrations
    if isinstance(operation, ops.SeparateDatabaseAndState):
        renames, state = [], before.clone()
        for inner in operation.database_operations:
            inner_after = state.clone()
            inner.state_forwards(app_label, inner_after)
            renames += _renames_by(inner, app_label, state, inner_after)
            state = inner_after
        return renames
    if isinstance(operation, ops.RenameModel):
        old_name, new_name = operation.old_name, operation.new_name
    elif isinstance(operation, ops.AlterModelTable):
        old_name = new_name = operation.name
    elif isinstance(operation, ops.RenameField | ops.AlterField):
        old_name = new_name = operation.model_name
    else:
        return []
    old = _model_tables(before, app_label, old_name, managed_only=True)
    new = _model_tables(after, app_label, new_name, managed_only=True)
    if isinstance(operation, ops.RenameField) and operation.old_name in old:
        old[operation.new_name] = old.pop(operation.old_name)
    return [(old[key], new[key]) for key in old if key in new and old[key] != new[key]]


def _may_rename(operation) -> bool:
    if isinstance(operation, migrations.SeparateDatabaseAndState):
        return any(_may_rename(inner) for inner in operation.database_operations)
    if isinstance(operation, migrations.AlterField):
        return getattr(operation.field, "many_to_many", False)
    return isinstance(operation, migrations.RenameModel | migrations.AlterModelTable | migrations.RenameField)


def _migration_table_events(
    migration: Migration, backwards: bool, before: ProjectState, after: ProjectState
) -> list[TableEvent]:
    """The tables one migration creates, drops and renames, in the order it runs them."""
    if not any(_may_rename(operation) for operation in migration.operations):
        old, new = _state_tables(before), _state_tables(after)
        events = [TableEvent("dropped", table) for table in sorted(old - new)]
        events += [TableEvent("created", table) for table in sorted(new - old)]
    else:  # operation by operation: a rename's place among the drops and creates matters
        events, state = [], before.clone()
        for operation in migration.operations:
            next_state = state.clone()
            operation.state_forwards(migration.app_label, next_state)
            renames = _renames_by(operation, migration.app_label, state, next_state)
            old = _state_tables(state) - {table for table, _ in renames}
            new = _state_tables(next_state) - {table for _, table in renames}
            events += [TableEvent("renamed", table, new_name) for table, new_name in renames]
            events += [TableEvent("dropped", table) for table in sorted(old - new)]
            events += [TableEvent("created", table) for table in sorted(new - old)]
            state = next_state
    return [event.undone() for event in reversed(events)] if backwards else events


def db_table(state, app_label: str, model_name: str) -> str | None:
    """The table of model ``model_name`` of ``app_label`` in ``state`` (None: no such model)."""
    model_state = state.models.get((app_label, model_name.lower()))
    if model_state is None:
        return None
    return model_state.options.get("db_table") or f"{app_label}_{model_state.name_lower}"


def _column_name(state, app_label: str, operation) -> str:
    """The database column of the field an operation adds, removes or alters."""
    field_name = getattr(operation, "name", None) or getattr(operation, "new_name", "")
    model_state = state.models.get((app_label, operation.model_name.lower()))
    field = model_state.fields.get(field_name) if model_state else None
    if field is None:
        return field_name
    return field.db_column or (f"{field_name}_id" if field.is_relation and field.many_to_one else field_name)


_INDEX_OPERATIONS = migrations.AddIndex | migrations.RemoveIndex | migrations.RenameIndex


def _operation_effect(operation, app_label, before, after, backwards, label, effect) -> None:
    ops = migrations
    model_name = getattr(operation, "model_name", None) or getattr(operation, "name", None)
    if isinstance(operation, ops.CreateModel):
        table = db_table(after, app_label, operation.name)
        if table:
            target = effect(table)
            target.dropped, target.created = (True, False) if backwards else (False, True)
    elif isinstance(operation, ops.DeleteModel):
        table = db_table(before, app_label, operation.name)
        if table:
            target = effect(table)
            target.created, target.dropped = (True, False) if backwards else (False, True)
    elif isinstance(operation, ops.AddField | ops.RemoveField | ops.AlterField | ops.RenameField):
        state = before if isinstance(operation, ops.RemoveField) else after
        table = db_table(state, app_label, operation.model_name) or db_table(before, app_label, operation.model_name)
        if not table:
            return
        target = effect(table)
        added = isinstance(operation, ops.AddField)
        removed = isinstance(operation, ops.RemoveField)
        if backwards:
            added, removed = removed, added
        name = _column_name(before if removed else after, app_label, operation)
        if added:
            target.columns_added.append(name)
        elif removed:
            target.columns_removed.append(name)
        else:
            target.columns_altered.append(name)
    elif isinstance(operation, _INDEX_OPERATIONS | ops.AddConstraint | ops.RemoveConstraint):
        table = db_table(after, app_label, operation.model_name) or db_table(before, app_label, operation.model_name)
        if table:
            is_index = isinstance(operation, _INDEX_OPERATIONS)
            target = effect(table).indexes if is_index else effect(table).constraints
            target.append(_index_change(operation, backwards))
    elif isinstance(operation, ops.RunPython | ops.RunSQL):
        # A data migration: which tables it touches is not declared; it is listed under "(data)",
        # once per migration however many RunPython/RunSQL operations it has.
        direction = "reverse" if backwards else "forwards"
        entry = f"{label} ({direction})"
        listed = effect("(data)").data_migrations
        if entry not in listed:
            listed.append(entry)
    elif model_name:
        table = db_table(after, app_label, model_name) or db_table(before, app_label, model_name)
        if table:
            effect(table).columns_altered.append(type(operation).__name__)


def _index_change(operation, backwards: bool) -> str:
    """``add NAME``, ``remove NAME`` or ``rename OLD -> NEW`` for an index or constraint operation (an
    unnamed index, RenameIndex(old_fields=...), is named by its columns)."""
    if isinstance(operation, migrations.RenameIndex):
        old = operation.old_name or f"({', '.join(operation.old_fields or ())})"
        return f"rename {operation.new_name} -> {old}" if backwards else f"rename {old} -> {operation.new_name}"
    declared = getattr(operation, "index", None) or getattr(operation, "constraint", None)
    name = getattr(declared, "name", None) or getattr(operation, "name", None)
    if not name:
        fields = getattr(declared, "fields", None) or getattr(declared, "expressions", None) or ()
        name = f"(unnamed on {', '.join(map(str, fields))})" if fields else "(unnamed)"
    adds = isinstance(operation, migrations.AddIndex | migrations.AddConstraint)
    return f"{'add' if adds != backwards else 'remove'} {name}"


def build_plan(
    using: str = DEFAULT_DB_ALIAS, app_label: str | None = None, migration_name: str | None = None
) -> MigrationPlan:
    """The plan `migrate` would run for this target, with its rollback path and per-table effect."""
    connection = connections[using]
    executor = MigrationExecutor(connection)
    targets = resolve_targets(executor, app_label, migration_name)
    raw_plan = executor.migration_plan(targets)
    tables, touched, events = _table_effects(executor, raw_plan) if raw_plan else ({}, {}, [])
    steps = [
        PlanStep(
            app=migration.app_label,
            name=migration.name,
            backwards=backwards,
            description=describe_migration(migration),
            atomic=not _non_transactional_reasons(migration),
            reversible=_is_reversible(migration),
            migration=migration,
            tables=touched.get(f"{migration.app_label}.{migration.name}", []),
        )
        for migration, backwards in raw_plan
    ]
    reasons = [reason for migration, _ in raw_plan for reason in _non_transactional_reasons(migration)]
    segments = segment_steps(steps)
    paths = {segment.rollback for segment in segments}
    return MigrationPlan(
        targets=targets,
        steps=steps,
        rollback_path=RESTORE if RESTORE in paths else REVERSE if REVERSE in paths else TRANSACTION,
        non_transactional_reasons=reasons,
        tables=tables,
        segments=segments,
        table_events=events,
        shadow_tables=shadow_tables(connection) if raw_plan else {},
    )
