"""RenameModel (the table's name changes).

Expand: the table is renamed and an updatable view takes its old name, with the table's column
defaults (so the old release's INSERT ... RETURNING gets its ids); the old release reads and
writes through the view, the new release the table. Complete: the view is dropped.
"""

from __future__ import annotations

from django.db import migrations

from migrations_ops.online.expand_contract.base import Context, Unsupported, WindowPlan, catalog


def plan(ctx: Context) -> WindowPlan | None:
    operation = ctx.operation
    if not isinstance(operation, migrations.RenameModel):
        return None
    old_table = ctx.table(operation.old_name)
    new_model = ctx.model(operation.new_name, new=True)
    new_table = new_model._meta.db_table
    if old_table not in ctx.existing or old_table == new_table:
        return None
    if any(f.many_to_many for f in new_model._meta.get_fields(include_hidden=True)):
        raise Unsupported(
            f"renames {old_table}, whose many-to-many tables Django renames with it "
            "(rename it without --online, or give the model its db_table)"
        )
    q_old, q_new = ctx.q(old_table), ctx.q(new_table)
    defaults = ctx.catalog_rows(
        """
        SELECT a.attname, COALESCE(pg_get_expr(d.adbin, d.adrelid),
               CASE WHEN a.attidentity <> '' THEN
                 format('nextval(%%L::regclass)', pg_get_serial_sequence(%s, a.attname)) END)
        FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
          AND (d.adbin IS NOT NULL OR a.attidentity <> '')
        ORDER BY a.attnum
        """,
        [q_old, q_old],
    )
    view_defaults = [f"ALTER VIEW {q_old} ALTER COLUMN {ctx.q(column)} SET DEFAULT {expr}" for column, expr in defaults]
    return WindowPlan(
        "rename_model",
        expand=[
            catalog(
                ";\n".join(
                    [
                        f"ALTER TABLE {q_old} RENAME TO {q_new}",
                        f"CREATE VIEW {q_old} AS SELECT * FROM {q_new}",
                        *view_defaults,
                    ]
                ),
                old_table,
                f"renamed to {new_table}; an updatable view keeps the name {old_table} for the old release",
            )
        ],
        complete=[catalog(f"DROP VIEW IF EXISTS {q_old}", new_table, f"the view {old_table} dropped")],
        rollback=[
            catalog(
                "DO $mo$ BEGIN\n"
                f"IF to_regclass('{q_new}') IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class WHERE oid = "
                f"to_regclass('{q_old}') AND relkind = 'v') THEN\n"
                f"  DROP VIEW {q_old}; ALTER TABLE {q_new} RENAME TO {q_old};\n"
                "END IF; END $mo$",
                old_table,
            )
        ],
        notes=[f"the old release uses the view {old_table}, the new release the table {new_table}"],
    )
