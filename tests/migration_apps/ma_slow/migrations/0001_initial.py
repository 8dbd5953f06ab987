import os
import time

from django.db import migrations, models


def write_then_sleep(apps, schema_editor):
    Tick = apps.get_model("ma_slow", "Tick")
    Tick.objects.using(schema_editor.connection.alias).create(n=1)
    marker = os.environ.get("MA_SLOW_MARKER")
    if marker:  # tells the test the migration is running
        with open(marker, "w") as handle:
            handle.write("running")
    time.sleep(float(os.environ.get("MA_SLOW_SECONDS", "0")))


class Migration(migrations.Migration):
    """Create ma_ticks, write a row, then sleep MA_SLOW_SECONDS."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Tick",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("n", models.IntegerField()),
            ],
            options={"db_table": "ma_ticks"},
        ),
        migrations.RunPython(write_then_sleep, migrations.RunPython.noop),
    ]
