"""AlterField from null=True to null=False (the column's type unchanged).

``SET NOT NULL`` scans the table under ACCESS EXCLUSIVE, and the old release may still write NULL.
Expand: a trigger gives NULLs written meanwhile the field's default, existing NULLs get it in
batches, and a ``CHECK (column IS NOT NULL)`` is added NOT VALID and validated online (the
trigger keeps it true). Complete: ``SET NOT NULL`` (PostgreSQL 12+ uses the validated CHECK and
does not scan), then the CHECK and the trigger go.
"""

from __future__ import annotations

from django.db import migrations

from migrations_ops.online.expand_contract.base import (
    Context,
    Unsupported,
    WindowPlan,
    backfill,
    catalog,
    ident,
    not_null_check,
    trigger_statements,
)


def plan(ctx: Context) -> WindowPlan | None:
    operation = ctx.operation
    if not isinstance(operation, migrations.AlterField):
        return None
    table = ctx.table(operation.model_name, new=True)
    old = ctx.model(operation.model_name)._meta.get_field(operation.name)
    new = ctx.model(operation.model_name, new=True)._meta.get_field(operation.name)
    if table not in ctx.existing or not old.null or new.null or old.column != new.column:
        return None
    if old.db_parameters(ctx.connection)["type"] != new.db_parameters(ctx.connection)["type"]:
        return None  # a type change as well: alter_type carries the nullability over
    literal = ctx.literal(new)
    if literal is None:
        raise Unsupported(
            f"makes {table}.{new.column} NOT NULL without a default: NULLs the old release writes during the "
            "deploy, and those already there, have no value to become (give the field a default)"
        )
    column, name = ctx.q(new.column), ident(table, new.column, "fill")
    trigger, drops = trigger_statements(
        ctx,
        table,
        name,
        f"IF NEW.{column} IS NULL THEN NEW.{column} := {literal}; END IF;",
        f"a trigger gives NULLs written by the old release the default {literal}",
    )
    checks, check = not_null_check(ctx, table, new.column)
    fill = backfill(
        f"UPDATE {ctx.q(table)} SET {column} = {literal} WHERE {column} IS NULL AND {{batch}}",
        table,
        f"existing NULLs become {literal}",
    )
    return WindowPlan(
        "set_not_null",
        expand=[trigger, fill, *checks],
        complete=[
            catalog(
                f"ALTER TABLE {ctx.q(table)} ALTER COLUMN {column} SET NOT NULL;\n"
                f"ALTER TABLE {ctx.q(table)} DROP CONSTRAINT IF EXISTS {ctx.q(check)};\n" + ";\n".join(drops),
                table,
                "SET NOT NULL without a scan (the validated CHECK proves it), then the CHECK and trigger go",
            )
        ],
        rollback=[
            catalog(";\n".join([*drops, f"ALTER TABLE {ctx.q(table)} DROP CONSTRAINT IF EXISTS {ctx.q(check)}"]), table)
        ],
        notes=[f"{table}.{new.column}: NULLs written by either release become {literal}"],
    )
