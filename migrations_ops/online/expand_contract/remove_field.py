"""RemoveField (the new release no longer has the column).

The old release still reads and writes the column, so it stays until complete. Expand lets the new
release insert without it: a NOT NULL column gets the field's default in the database (or, for a
unique column or one without a default, loses NOT NULL); a foreign key from it is dropped, because
the new release deletes referenced rows without knowing this column. Complete drops the column.
"""

from __future__ import annotations

from django.db import migrations

from migrations_ops.online.expand_contract.base import Context, WindowPlan, catalog, not_null_check, validate


def plan(ctx: Context) -> WindowPlan | None:
    operation = ctx.operation
    if not isinstance(operation, migrations.RemoveField):
        return None
    table = ctx.table(operation.model_name)
    field = ctx.model(operation.model_name)._meta.get_field(operation.name)
    if table not in ctx.existing or field.many_to_many or field.column is None:
        return None
    q_table, q_column = ctx.q(table), ctx.q(field.column)
    expand, rollback, notes = [], [], []
    for name, definition in ctx.own_foreign_keys(table, field.column):
        expand.append(
            catalog(f"ALTER TABLE {q_table} DROP CONSTRAINT IF EXISTS {ctx.q(name)}", table, f"{name} dropped")
        )
        rollback.append(
            catalog(
                f"DO $mo$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = '{name}' AND conrelid = "
                f"'{q_table}'::regclass) THEN ALTER TABLE {q_table} ADD CONSTRAINT {ctx.q(name)} {definition} "
                f"NOT VALID; END IF; END $mo$",
                table,
            )
        )
        rollback.append(validate(ctx, table, name))
        notes.append(f"foreign key {name} dropped: the new release deletes rows it points at without knowing it")
    literal = ctx.literal(field)
    if not field.null:
        if literal is not None and not field.unique:
            expand.append(
                catalog(f"ALTER TABLE {q_table} ALTER COLUMN {q_column} SET DEFAULT {literal}", table, "default kept")
            )
            rollback.append(catalog(f"ALTER TABLE {q_table} ALTER COLUMN {q_column} DROP DEFAULT", table))
            notes.append(f"{table}.{field.column} gets {literal} in rows the new release inserts")
        else:
            expand.append(catalog(f"ALTER TABLE {q_table} ALTER COLUMN {q_column} DROP NOT NULL", table, "nullable"))
            checks, check = not_null_check(ctx, table, field.column)
            rollback += [
                *checks,
                catalog(
                    f"ALTER TABLE {q_table} ALTER COLUMN {q_column} SET NOT NULL;\n"
                    f"ALTER TABLE {q_table} DROP CONSTRAINT IF EXISTS {ctx.q(check)}",
                    table,
                ),
            ]
            notes.append(f"{table}.{field.column} is NULL in rows the new release inserts")
    return WindowPlan(
        "remove_field",
        expand=expand,
        complete=[catalog(f"ALTER TABLE {q_table} DROP COLUMN IF EXISTS {q_column} CASCADE", table, "column dropped")],
        rollback=rollback,
        notes=notes or [f"{table}.{field.column} stays for the old release until --complete"],
    )
