from django.db import migrations


def count(apps, schema_editor):
    Note = apps.get_model("ma_default_manager", "Note")
    assert Note.objects.using(schema_editor.connection.alias).count() >= 0


class Migration(migrations.Migration):
    """An innocent data migration: reads ma_notes, writes nothing."""

    dependencies = [("ma_default_manager", "0002_rewrite_without_alias")]
    operations = [migrations.RunPython(count, migrations.RunPython.noop)]
