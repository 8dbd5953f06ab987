"""Which schema the database is at, and the columns to write, read from the models and the
migration graph instead of being listed by hand."""

from __future__ import annotations

from functools import cache

from django.db import connections
from django.db.migrations.loader import MigrationLoader
from django.db.models import Model

from seeding.base import SeedRefused

# Production before the upgrade, and the upgrade itself (README, "The migration history").
BASELINE_MIGRATIONS = (("accounts", "0001_initial"), ("billing", "0001_initial"))
UPGRADE_MIGRATIONS = (
    ("accounts", "0002_user_permissions"),
    ("billing", "0002_enhanced_subscription_payment_models"),
    ("loyalty", "0002_pointstransaction_payment_intent"),
    ("analytics", "0001_initial"),
)


@cache
def _tables(nodes: tuple[tuple[str, str], ...]) -> dict[str, set[str]]:
    """{table: its columns} as the migration graph leaves them after `nodes` (and their dependencies)."""
    state = MigrationLoader(None, ignore_no_migrations=True).project_state(list(nodes), at_end=True)
    return {model._meta.db_table: {f.column for f in model._meta.concrete_fields} for model in state.apps.get_models()}


@cache
def upgrade_schema() -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """(tables the upgrade creates, {existing table: columns the upgrade adds to it})."""
    before, after = _tables(BASELINE_MIGRATIONS), _tables(UPGRADE_MIGRATIONS)
    added = {table: frozenset(after[table] - columns) for table, columns in before.items() if after[table] - columns}
    return frozenset(after.keys() - before.keys()), added


def detect_state(using: str = "default") -> str:
    """Return ``"head"`` when the upgrade's tables and columns exist, ``"baseline"`` when none do.

    Raises SeedRefused for a database without the baseline tables or part-way through the upgrade.
    """
    connection = connections[using]
    tables = set(connection.introspection.table_names())
    if not {"users", "subscriptions"} <= tables:
        raise SeedRefused("the database has no users/subscriptions tables: run migrate first")
    new_tables, new_columns = upgrade_schema()
    present = {table: set(present_columns(using, table)) for table in new_columns}
    found = [bool(new_tables & tables)] + [bool(columns & present[table]) for table, columns in new_columns.items()]
    if tables >= new_tables and all(present[table] >= columns for table, columns in new_columns.items()):
        return "head"
    if not any(found):
        return "baseline"
    raise SeedRefused(
        "the database is part-way through the upgrade (some of its tables or columns exist): "
        "migrate to the baseline or to the head first"
    )


def present_columns(using: str, table: str) -> list[str]:
    connection = connections[using]
    with connection.cursor() as cursor:
        return [c.name for c in connection.introspection.get_table_description(cursor, table)]


def seeded_columns(model: type[Model], state: str, *, with_pk: bool = True) -> tuple[str, ...]:
    """The columns seeding writes for `model` at `state` ("baseline" or "head"), in the model's
    field order (the order the phases generate values in).

    Which columns: those the table has after the state's migrations. Columns later migrations add
    are left to their defaults, so a new nullable or defaulted column never breaks seeding, and a
    phase is only ever asked for the values it was written for.
    """
    existing = _tables(BASELINE_MIGRATIONS if state == "baseline" else UPGRADE_MIGRATIONS)[model._meta.db_table]
    return tuple(
        f.column for f in model._meta.concrete_fields if f.column in existing and (with_pk or not f.primary_key)
    )
