"""Migration operations shared by the apps' migrations."""

from __future__ import annotations

from django.db import migrations

from migrations_ops.dialect import for_vendor


def _skip(*args) -> None:
    """What a PostgreSQL-only operation does on every other engine."""


class PostgreSQLOnlySQL(migrations.RunSQL):
    """RunSQL that runs on PostgreSQL and is a no-op elsewhere (for PostgreSQL-only DDL such as
    exclusion constraints). It does not touch the migration state: the models do not declare the
    object, so `makemigrations` stays clean on every engine."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        run = for_vendor(
            {"postgresql": super().database_forwards}, schema_editor.connection, feature=self.describe(), default=_skip
        )
        run(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        run = for_vendor(
            {"postgresql": super().database_backwards}, schema_editor.connection, feature=self.describe(), default=_skip
        )
        run(app_label, schema_editor, from_state, to_state)

    def describe(self) -> str:
        return "Raw SQL operation (PostgreSQL only)"
