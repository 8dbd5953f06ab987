from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ma_entries with three rows."""

    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Entry",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", models.CharField(max_length=50)),
            ],
            options={"db_table": "ma_entries"},
        ),
        migrations.RunSQL("INSERT INTO ma_entries (text) VALUES ('a'), ('b'), ('c')", migrations.RunSQL.noop),
    ]
