import os
import time

from django.db import migrations, models


def weigh_then_fail(apps, schema_editor):
    marker = os.environ.get("MA_SEGMENTS_MARKER")
    if marker:  # tells a test the non-atomic step is running
        with open(marker, "w") as handle:
            handle.write("running")
    time.sleep(float(os.environ.get("MA_SEGMENTS_SECONDS", "0")))
    raise RuntimeError("ma_segments 0002 fails on purpose after adding ma_parts.weight")


class Migration(migrations.Migration):
    """Add ma_parts.weight outside a transaction, wait MA_SEGMENTS_SECONDS, then fail."""

    atomic = False
    dependencies = [("ma_segments", "0001_initial")]
    operations = [
        migrations.AddField("part", "weight", models.IntegerField(null=True)),
        migrations.RunPython(weigh_then_fail, migrations.RunPython.noop),
    ]
