"""What a migration plan could have changed, and nothing else: the schema and django_migrations.

After a rollback, a reversal or a restore, "the database is as before" must not be judged by row
counts: the application keeps writing, and its inserts are not the plan's doing. A plan's own
statements change the schema (tables, columns, constraints, indexes) and django_migrations; data
its migrations wrote is undone by the same transaction or reverse migration that undoes the schema.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections

from migrations_ops.status import RUN_RECORD_TABLES, applied_migrations


@dataclass(frozen=True)
class Footprint:
    migrations: dict[str, list[str]]
    schema: dict[str, tuple]  # table -> (columns, constraints)

    def differences(self, after: Footprint) -> list[str]:
        """What ``after`` has that this footprint has not, and the other way round, one line each."""
        problems = []
        if after.migrations != self.migrations:
            problems.append("applied migrations differ from before")
        for table in sorted(set(self.schema) | set(after.schema)):
            if table not in after.schema:
                problems.append(f"table {table} is gone")
            elif table not in self.schema:
                problems.append(f"table {table} was left behind")
            elif after.schema[table] != self.schema[table]:
                problems.append(f"table {table} has another schema (columns, constraints or indexes)")
        return problems


def capture(using: str = DEFAULT_DB_ALIAS) -> Footprint:
    """The schema of every table (columns with type and nullability, constraints and indexes by name
    and columns) and the applied migrations, read from the catalog only."""
    connection = connections[using]
    introspection = connection.introspection
    schema = {}
    with connection.cursor() as cursor:
        # Of the bookkeeping tables (status.BOOKKEEPING_TABLES) only the run records are left out: they
        # are safe_migrate's own, written outside any plan. The rest of the bookkeeping (django_migrations,
        # content types, checksums) has rows a plan changes, but its schema changes only by migrating,
        # so a schema left changed there is the plan's and must be seen.
        for table in sorted(set(introspection.table_names(cursor)) - RUN_RECORD_TABLES):
            columns = tuple(
                (column.name, column.type_code, column.null_ok)
                for column in introspection.get_table_description(cursor, table)
            )
            constraints = tuple(
                sorted(
                    (name, tuple(info.get("columns") or ()), bool(info.get("unique")), bool(info.get("index")))
                    for name, info in introspection.get_constraints(cursor, table).items()
                )
            )
            schema[table] = (columns, constraints)
    return Footprint(migrations=applied_migrations(using), schema=schema)
