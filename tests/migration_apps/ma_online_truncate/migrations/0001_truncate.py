from django.db import migrations

from migrations_ops.operations import BoundedRunPython


def empty_the_table(apps, schema_editor):
    """Declared bounded, and quick, but it empties a table in use: TRUNCATE, which the server's
    statistics count no deleted row for."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("TRUNCATE ma_gadgets")


class Migration(migrations.Migration):
    """A misjudgement the row-count guard must catch on the online path, where nothing counted the rows."""

    dependencies = [("ma_expand", "0001_initial")]
    operations = [BoundedRunPython(empty_the_table, migrations.RunPython.noop)]
