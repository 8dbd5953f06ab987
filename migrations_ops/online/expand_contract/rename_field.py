"""RenameField (the column's name changes).

The old release reads and writes the old name, the new release the new one. Expand: the new column
(nullable), triggers that keep both equal whichever release writes, the existing rows copied in
batches, the field's indexes, unique constraint and foreign key built online on the new column, and
NOT NULL as a validated CHECK. Complete: the old column dropped and NOT NULL set without a scan, in
one short transaction.
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
    index_statements,
    not_null_check,
    trigger_statements,
)


def plan(ctx: Context) -> WindowPlan | None:
    operation = ctx.operation
    if not isinstance(operation, migrations.RenameField):
        return None
    table = ctx.table(operation.model_name, new=True)
    old = ctx.model(operation.model_name)._meta.get_field(operation.old_name)
    new = ctx.model(operation.model_name, new=True)._meta.get_field(operation.new_name)
    if table not in ctx.existing or old.column == new.column or new.many_to_many:
        return None  # a new table, or a field whose column keeps its name (db_column): nothing to do
    if new.primary_key:
        raise Unsupported(f"renames the primary key column {table}.{old.column} (rename it without --online)")
    if ctx.referencing_constraints(table, old.column):
        raise Unsupported(
            f"renames {table}.{old.column}, which foreign keys of other tables point at (rename it without --online)"
        )
    q_table, q_old, q_new = ctx.q(table), ctx.q(old.column), ctx.q(new.column)
    column_type = new.db_parameters(ctx.connection)["type"]
    name = ident(table, old.column, new.column)
    trigger, drops = trigger_statements(
        ctx,
        table,
        name,
        f"IF TG_OP = 'INSERT' THEN\n"
        f"  NEW.{q_new} := COALESCE(NEW.{q_new}, NEW.{q_old}); NEW.{q_old} := COALESCE(NEW.{q_old}, NEW.{q_new});\n"
        f"ELSIF NEW.{q_old} IS DISTINCT FROM OLD.{q_old} THEN NEW.{q_new} := NEW.{q_old};\n"
        f"ELSIF NEW.{q_new} IS DISTINCT FROM OLD.{q_new} THEN NEW.{q_old} := NEW.{q_new};\n"
        f"END IF;",
        f"triggers keep {old.column} and {new.column} equal, whichever release writes",
    )
    expand = [
        catalog(f"ALTER TABLE {q_table} ADD COLUMN {q_new} {column_type} NULL", table, f"{new.column} added, nullable"),
        trigger,
        backfill(
            f"UPDATE {q_table} SET {q_new} = {q_old} WHERE {q_new} IS DISTINCT FROM {q_old} AND {{batch}}",
            table,
            f"existing rows: {new.column} = {old.column}",
        ),
        *index_statements(ctx, operation.model_name, new, new.column),
    ]
    complete_sql = [*drops, f"ALTER TABLE {q_table} DROP COLUMN IF EXISTS {q_old}"]
    if not old.null:
        checks, check = not_null_check(ctx, table, new.column)
        expand += checks
        complete_sql += [
            f"ALTER TABLE {q_table} ALTER COLUMN {q_new} SET NOT NULL",
            f"ALTER TABLE {q_table} DROP CONSTRAINT IF EXISTS {ctx.q(check)}",
        ]
    return WindowPlan(
        "rename_field",
        expand=expand,
        complete=[catalog(";\n".join(complete_sql), table, f"{old.column} dropped; {new.column} NOT NULL")],
        rollback=[catalog(";\n".join([*drops, f"ALTER TABLE {q_table} DROP COLUMN IF EXISTS {q_new}"]), table)],
        notes=[
            f"{table}: the old release uses {old.column}, the new release {new.column}; each sees the other's writes"
        ],
    )
