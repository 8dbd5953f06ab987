from django.db import migrations, models


class Migration(migrations.Migration):
    """SQLite only: virtual tables created by RunSQL, each with the managed model that describes it
    (as a search app does). Each virtual table keeps its rows in shadow tables that SQLite creates and
    drops with it."""

    dependencies = []
    operations = [
        migrations.RunSQL(
            "CREATE VIRTUAL TABLE ma_fts_entry USING fts5(title, body)",
            "DROP TABLE ma_fts_entry",
            state_operations=[
                migrations.CreateModel(
                    name="Entry",
                    fields=[
                        ("rowid", models.BigAutoField(primary_key=True, serialize=False)),
                        ("title", models.TextField()),
                        ("body", models.TextField()),
                    ],
                    options={"db_table": "ma_fts_entry"},
                ),
            ],
        ),
        migrations.RunSQL(
            "CREATE VIRTUAL TABLE ma_fts_doc USING fts4(body)",
            "DROP TABLE ma_fts_doc",
            state_operations=[
                migrations.CreateModel(
                    name="Doc",
                    fields=[
                        ("rowid", models.BigAutoField(primary_key=True, serialize=False)),
                        ("body", models.TextField()),
                    ],
                    options={"db_table": "ma_fts_doc"},
                ),
            ],
        ),
        migrations.RunSQL(
            "CREATE VIRTUAL TABLE ma_fts_box USING rtree(id, min_x, max_x)",
            "DROP TABLE ma_fts_box",
            state_operations=[
                migrations.CreateModel(
                    name="Box",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("min_x", models.FloatField()),
                        ("max_x", models.FloatField()),
                    ],
                    options={"db_table": "ma_fts_box"},
                ),
            ],
        ),
    ]
