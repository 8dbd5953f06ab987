from django.db import migrations


def fail(apps, schema_editor):
    raise RuntimeError("ma_irreversible 0002 fails on purpose")


class Migration(migrations.Migration):
    """A non-atomic step that fails: the irreversible 0001 before it committed on its own."""

    atomic = False
    dependencies = [("ma_irreversible", "0001_initial")]
    operations = [migrations.RunPython(fail, migrations.RunPython.noop)]
