"""AddField of a NOT NULL column that has only a Python-side default.

Django adds it with a temporary database default and drops that default at once: from then on the
old release's INSERTs, which do not name the column, fail. Expand adds the column with the default
kept in the database (a constant default: a catalog change since PostgreSQL 11); complete drops it.
"""

from __future__ import annotations

from django.db import migrations
from django.db.models import NOT_PROVIDED, Value

from migrations_ops.online import facts
from migrations_ops.online.expand_contract.base import Context, Unsupported, WindowPlan, catalog
from migrations_ops.online.statements import plan_statements


def plan(ctx: Context) -> WindowPlan | None:
    operation = ctx.operation
    if not isinstance(operation, migrations.AddField):
        return None
    field = operation.field
    table = ctx.table(operation.model_name, new=True)
    if table not in ctx.existing or field.null or field.many_to_many or field.db_default is not NOT_PROVIDED:
        return None
    model_field = ctx.model(operation.model_name, new=True)._meta.get_field(operation.name)
    literal = ctx.literal(model_field)
    if literal is None:
        raise Unsupported(
            f"adds NOT NULL column {model_field.column} without any default: rows the old release inserts "
            "cannot have it (give the field a default or db_default)"
        )
    if callable(field.default) and (field.unique or field.primary_key):
        raise Unsupported(
            f"adds unique column {model_field.column} whose default is computed per row in Python: the old "
            "release's rows would all get one value (add it nullable, fill it, then make it NOT NULL)"
        )
    kept = model_field.clone()
    kept.db_default = Value(ctx.literal_value(model_field), output_field=kept)
    expand_op = migrations.AddField(operation.model_name, operation.name, kept)
    after = ctx.state.clone()
    expand_op.state_forwards(ctx.app_label, after)
    with ctx.connection.schema_editor(collect_sql=True, atomic=False) as editor:
        expand_op.database_forwards(ctx.app_label, editor, ctx.state, after)
    expand = [s for sql in editor.collected_sql for s in plan_statements(sql, ctx.existing, facts.probe(ctx.using))]
    column = ctx.q(model_field.column)
    return WindowPlan(
        "add_not_null",
        expand=expand,
        complete=[
            catalog(
                f"ALTER TABLE {ctx.q(table)} ALTER COLUMN {column} DROP DEFAULT",
                table,
                "the temporary database default dropped (the old release is gone)",
            )
        ],
        rollback=[catalog(f"ALTER TABLE {ctx.q(table)} DROP COLUMN IF EXISTS {column}", table)],
        notes=[f"{table}.{model_field.column} keeps the database default {literal} for the old release's inserts"],
    )
