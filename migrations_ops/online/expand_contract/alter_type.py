"""AlterField that changes a column's type in a way PostgreSQL cannot do in the catalog.

(A change the server does without a rewrite, such as varchar(50) -> varchar(100), is not planned
here: it runs as one catalog statement.) Expand: a shadow column of the new type, kept equal to the
column by a trigger (the cast of what either release writes), the existing rows cast in batches,
the new field's indexes and unique constraint built online on the shadow, NOT NULL as a validated
CHECK. Complete: in one short transaction the column is dropped and the shadow takes its name. Only
widening casts are taken (an implicit cast in pg_cast, no shorter length, no fewer digits): a value
the old release writes during the window must fit the new type too.
"""

from __future__ import annotations

from django.db import migrations

from migrations_ops.online import facts
from migrations_ops.online.expand_contract.base import (
    Context,
    Unsupported,
    WindowPlan,
    backfill,
    catalog,
    ident,
    index_statements,
    not_null_check,
    rolled_back,
    trigger_statements,
)


def plan(ctx: Context) -> WindowPlan | None:
    operation = ctx.operation
    if not isinstance(operation, migrations.AlterField):
        return None
    table = ctx.table(operation.model_name, new=True)
    old = ctx.model(operation.model_name)._meta.get_field(operation.name)
    new = ctx.model(operation.model_name, new=True)._meta.get_field(operation.name)
    old_type = old.db_parameters(ctx.connection)["type"]
    new_type = new.db_parameters(ctx.connection)["type"]
    if table not in ctx.existing or old_type == new_type or old.column != new.column or not new_type:
        return None
    if not facts.rewrites(ctx.using, table, f"ALTER COLUMN {ctx.q(old.column)} TYPE {new_type}").rewrites:
        return None  # the server changes it in the catalog: one statement (analysis runs it as such)
    if new.primary_key or ctx.referencing_constraints(table, old.column):
        raise Unsupported(
            f"changes the type of {table}.{old.column}, which is a key that other tables point at "
            "(change it without --online)"
        )
    narrowing = _narrowing(ctx, old, new, old_type, new_type)
    if narrowing:
        rows = _rows_that_do_not_fit(ctx, table, old.column, new_type)
        named = f"; rows that do not fit now: {rows}" if rows else ""
        raise Unsupported(
            f"changes {table}.{old.column} from {old_type} to {new_type}, {narrowing}: a value the old release "
            f"writes during the deploy could not be kept{named} (change it without --online)"
        )
    q_table, q_column = ctx.q(table), ctx.q(old.column)
    shadow = ident(old.column, "new")
    q_shadow = ctx.q(shadow)
    name = ident(table, old.column, "cast")
    trigger, drops = trigger_statements(
        ctx,
        table,
        name,
        f"NEW.{q_shadow} := NEW.{q_column}::{new_type};",
        f"a trigger casts what either release writes into the {new_type} shadow column",
    )
    expand = [
        catalog(f"ALTER TABLE {q_table} ADD COLUMN {q_shadow} {new_type} NULL", table, f"shadow column {new_type}"),
        trigger,
        backfill(
            f"UPDATE {q_table} SET {q_shadow} = {q_column}::{new_type} "
            f"WHERE {q_shadow} IS DISTINCT FROM {q_column}::{new_type} AND {{batch}}",
            table,
            f"existing rows cast to {new_type}",
        ),
        *index_statements(ctx, operation.model_name, new, shadow),
    ]
    swap = [
        *drops,
        f"ALTER TABLE {q_table} DROP COLUMN {q_column}",
        f"ALTER TABLE {q_table} RENAME COLUMN {q_shadow} TO {q_column}",
    ]
    if not new.null:
        checks, check = not_null_check(ctx, table, shadow)
        expand += checks
        swap += [
            f"ALTER TABLE {q_table} ALTER COLUMN {q_column} SET NOT NULL",
            f"ALTER TABLE {q_table} DROP CONSTRAINT IF EXISTS {ctx.q(check)}",
        ]
    default = ctx.literal(new) if new.db_default is not None and _has_db_default(new) else None
    if default is not None:
        swap.append(f"ALTER TABLE {q_table} ALTER COLUMN {q_column} SET DEFAULT {default}")
    return WindowPlan(
        "alter_type",
        expand=expand,
        complete=[catalog(";\n".join(swap), table, f"the {new_type} column takes the place of the {old_type} one")],
        rollback=[catalog(";\n".join([*drops, f"ALTER TABLE {q_table} DROP COLUMN IF EXISTS {q_shadow}"]), table)],
        notes=[f"{table}.{old.column} stays {old_type} until --complete; both releases write values that fit it"],
    )


def _has_db_default(field) -> bool:
    from django.db.models import NOT_PROVIDED

    return field.db_default is not NOT_PROVIDED


def _narrowing(ctx: Context, old, new, old_type: str, new_type: str) -> str:
    """Why some value of the old type may not fit the new one ("" when every value fits)."""
    with ctx.connection.cursor() as cursor:
        cursor.execute(
            "SELECT castcontext FROM pg_cast WHERE castsource = %s::regtype AND casttarget = %s::regtype",
            [old_type, new_type],
        )
        row = cursor.fetchone()
        cursor.execute("SELECT %s::regtype = %s::regtype", [old_type, new_type])
        same_type = cursor.fetchone()[0]
    if not same_type and (row is None or row[0] != "i"):
        return "which is not a widening cast (pg_cast has no implicit cast between them)"
    old_length, new_length = getattr(old, "max_length", None), getattr(new, "max_length", None)
    if old_length and new_length and new_length < old_length:
        return f"a shorter length ({old_length} -> {new_length})"
    if old_length is None and new_length and not same_type:
        return f"a bounded length ({new_length}) for values that had none"
    old_digits, new_digits = getattr(old, "max_digits", None), getattr(new, "max_digits", None)
    if old_digits and new_digits:
        fewer_places = new.decimal_places < old.decimal_places
        if fewer_places or new_digits - new.decimal_places < old_digits - old.decimal_places:
            return "fewer digits"
    return ""


def _rows_that_do_not_fit(ctx: Context, table: str, column: str, new_type: str) -> str:
    """The first rows whose value the new type cannot hold, by primary key (each cast tried alone)."""
    model_pk = ctx.catalog_rows(
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        "WHERE i.indrelid = %s::regclass AND i.indisprimary",
        [ctx.q(table)],
    )
    if not model_pk:
        return ""
    pk = ctx.q(model_pk[0][0])
    fits = ident(table, column, "fits")
    found = ""
    with rolled_back(ctx) as cursor:
        cursor.execute(
            f"CREATE FUNCTION pg_temp.{ctx.q(fits)}(value text) RETURNS boolean LANGUAGE plpgsql AS $mo$\n"
            # An assignment, as the column would take the value (an explicit cast truncates silently).
            f"DECLARE kept {new_type}; BEGIN kept := value; RETURN true; "
            "EXCEPTION WHEN others THEN RETURN false; END $mo$"
        )
        cursor.execute(
            f"SELECT {pk} FROM {ctx.q(table)} WHERE {ctx.q(column)} IS NOT NULL "
            f"AND NOT pg_temp.{ctx.q(fits)}({ctx.q(column)}::text) ORDER BY {pk} LIMIT 5"
        )
        found = ", ".join(str(row[0]) for row in cursor.fetchall())
    return found
