from django.db import migrations, models


def fail(apps, schema_editor):
    raise RuntimeError("ma_raises 0003 fails on purpose after altering ma_widgets.name")


class Migration(migrations.Migration):
    """Widen ma_widgets.name, then fail."""

    dependencies = [("ma_raises", "0002_size")]
    operations = [
        migrations.AlterField("widget", "name", models.CharField(max_length=60)),
        migrations.RunPython(fail, migrations.RunPython.noop),
    ]
