from django.db import migrations, models

# As a third-party app does it: per-vendor DDL the model state describes only roughly.
CREATE = {
    "sqlite": ["CREATE VIRTUAL TABLE ma_entries_search USING fts5(title, body)"],
    "postgresql": [
        "CREATE TABLE ma_entries_base (rowid bigserial PRIMARY KEY, title text, body text)",
        "CREATE VIEW ma_entries_search AS SELECT rowid, title, body FROM ma_entries_base",
    ],
}
DROP = {
    "sqlite": ["DROP TABLE ma_entries_search"],
    "postgresql": ["DROP VIEW ma_entries_search", "DROP TABLE ma_entries_base"],
}


def create(apps, schema_editor):
    for sql in CREATE[schema_editor.connection.vendor]:
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    for sql in DROP[schema_editor.connection.vendor]:
        schema_editor.execute(sql)


class Migration(migrations.Migration):
    """A full-text virtual table (SQLite) or a view (PostgreSQL) behind a model; an unmanaged and a proxy model."""

    dependencies = []
    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Entry",
                    fields=[
                        ("rowid", models.BigAutoField(primary_key=True, serialize=False)),
                        ("title", models.TextField()),
                        ("body", models.TextField()),
                    ],
                    options={"db_table": "ma_entries_search"},
                ),
            ],
            database_operations=[migrations.RunPython(create, drop)],
        ),
        migrations.CreateModel(
            name="Source",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.TextField()),
            ],
            options={"db_table": "ma_external_sources", "managed": False},
        ),
        migrations.CreateModel(
            name="ShortEntry",
            fields=[],
            options={"proxy": True, "indexes": [], "constraints": []},
            bases=("ma_virtual.entry",),
        ),
    ]
