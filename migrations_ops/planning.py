"""What a safe_migrate run would do: targets, the plan, its rollback path and its effect per table.

Pure reading: nothing here changes the database. The target rules are `migrate`'s own
(`app_label [migration_name|zero]`, forwards or backwards).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.apps import apps as global_apps
from django.db import DEFAULT_DB_ALIAS, connections, migrations
from django.db.migrations.exceptions import AmbiguityError
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.migration import Migration

from migrations_ops.errors import BadInput
from migrations_ops.status import describe_migration

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

    @property
    def empty(self) -> bool:
        return not self.steps

    @property
    def backwards(self) -> bool:
        return any(step.backwards for step in self.steps)

    def dropped_tables(self) -> set[str]:
        return {name for name, effect in self.tables.items() if effect.dropped}

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
        names = "; ".join(f"{', '.join(sorted(leaves))} in {app}" for app, leaves in sorted(conflicts.items()))
        raise BadInput(
            f"conflicting migrations (several leaf nodes): {names}; fix with 'python manage.py makemigrations --merge'"
        )
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
) -> tuple[dict[str, TableEffect], dict[str, list[str]]]:
    """The effect of the plan per table, and the tables each migration touches."""
    effects: dict[str, TableEffect] = {}
    touched: dict[str, list[str]] = {}
    loader = executor.loader

    for migration, backwards in plan:
        key = (migration.app_label, migration.name)
        before = loader.project_state(key, at_end=False)
        after = loader.project_state(key, at_end=True)
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
    return effects, touched


def _db_table(state, app_label: str, model_name: str) -> str | None:
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
        table = _db_table(after, app_label, operation.name)
        if table:
            target = effect(table)
            target.dropped, target.created = (True, False) if backwards else (False, True)
    elif isinstance(operation, ops.DeleteModel):
        table = _db_table(before, app_label, operation.name)
        if table:
            target = effect(table)
            target.created, target.dropped = (True, False) if backwards else (False, True)
    elif isinstance(operation, ops.AddField | ops.RemoveField | ops.AlterField | ops.RenameField):
        state = before if isinstance(operation, ops.RemoveField) else after
        table = _db_table(state, app_label, operation.model_name) or _db_table(before, app_label, operation.model_name)
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
        table = _db_table(after, app_label, operation.model_name) or _db_table(before, app_label, operation.model_name)
        if table:
            is_index = isinstance(operation, _INDEX_OPERATIONS)
            declared = getattr(operation, "index" if is_index else "constraint", None)
            name = getattr(declared, "name", None) or getattr(operation, "name", "")
            adds = isinstance(operation, ops.AddIndex | ops.AddConstraint)
            verb = "add" if adds != backwards else "remove"
            (effect(table).indexes if is_index else effect(table).constraints).append(f"{verb} {name}")
    elif isinstance(operation, ops.RunPython | ops.RunSQL):
        # A data migration: which tables it touches is not declared; it is listed under "(data)".
        direction = "reverse" if backwards else "forwards"
        effect("(data)").data_migrations.append(f"{label} ({direction})")
    elif model_name:
        table = _db_table(after, app_label, model_name) or _db_table(before, app_label, model_name)
        if table:
            effect(table).columns_altered.append(type(operation).__name__)


def build_plan(
    using: str = DEFAULT_DB_ALIAS, app_label: str | None = None, migration_name: str | None = None
) -> MigrationPlan:
    """The plan `migrate` would run for this target, with its rollback path and per-table effect."""
    connection = connections[using]
    executor = MigrationExecutor(connection)
    targets = resolve_targets(executor, app_label, migration_name)
    raw_plan = executor.migration_plan(targets)
    tables, touched = _table_effects(executor, raw_plan) if raw_plan else ({}, {})
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
    )
