from django.db import migrations

from migrations_ops.operations import BoundedRunPython


def hold_the_table(apps, schema_editor):
    """Declared bounded, but it is not: it holds ACCESS EXCLUSIVE on a table in use for seconds."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("LOCK TABLE ma_gadgets IN ACCESS EXCLUSIVE MODE")
        cursor.execute("SELECT pg_sleep(5)")


class Migration(migrations.Migration):
    """A misjudgement the guard must catch: the online path trusts the declaration, the
    statement timeout does not."""

    dependencies = [("ma_expand", "0001_initial")]
    operations = [BoundedRunPython(hold_the_table, migrations.RunPython.noop)]
