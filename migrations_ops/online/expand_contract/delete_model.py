"""DeleteModel (the new release no longer has the table).

The old release still uses the table, so it stays until complete. Expand drops its foreign keys to
other tables (the new release deletes rows they point at without knowing this table). Complete
drops the table and the many-to-many tables Django made for it.
"""

from __future__ import annotations

from django.db import migrations

from migrations_ops.online.expand_contract.base import Context, Unsupported, WindowPlan, catalog, validate


def plan(ctx: Context) -> WindowPlan | None:
    operation = ctx.operation
    if not isinstance(operation, migrations.DeleteModel):
        return None
    model = ctx.model(operation.name)
    table = model._meta.db_table
    if table not in ctx.existing:
        return None
    tables = [table] + [
        f.remote_field.through._meta.db_table
        for f in model._meta.local_many_to_many
        if f.remote_field.through._meta.auto_created
    ]
    pointing = [ref for ref in ctx.referencing_constraints(table) if ref[0] not in tables]
    if pointing:
        raise Unsupported(
            f"deletes {table}, which {', '.join(f'{t} ({c})' for t, c in pointing)} still point at: remove those "
            "fields in the same release first"
        )
    expand, rollback = [], []
    for owner in tables:
        if owner not in ctx.existing:
            continue
        for name, definition in ctx.own_foreign_keys(owner):
            q_owner = ctx.q(owner)
            expand.append(catalog(f"ALTER TABLE {q_owner} DROP CONSTRAINT IF EXISTS {ctx.q(name)}", owner))
            rollback += [
                catalog(
                    f"DO $mo$ BEGIN IF to_regclass('{q_owner}') IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "
                    f"pg_constraint WHERE conname = '{name}' AND conrelid = '{q_owner}'::regclass) THEN ALTER TABLE "
                    f"{q_owner} ADD CONSTRAINT {ctx.q(name)} {definition} NOT VALID; END IF; END $mo$",
                    owner,
                ),
                validate(ctx, owner, name),
            ]
    return WindowPlan(
        "delete_model",
        expand=expand,
        complete=[catalog(";\n".join(f"DROP TABLE IF EXISTS {ctx.q(t)} CASCADE" for t in reversed(tables)), table)],
        rollback=rollback,
        notes=[f"{', '.join(tables)} stay(s) for the old release until --complete (without foreign keys)"],
    )
