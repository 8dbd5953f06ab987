from django.db import migrations


def rewrite(apps, schema_editor):
    # Deliberately the default manager, NOT .using(schema_editor.connection.alias), as many
    # third-party data migrations do: it writes to whatever database `default` is.
    Note = apps.get_model("ma_default_manager", "Note")
    Note.objects.update(text="rewritten")


class Migration(migrations.Migration):
    """Rewrite every note through the default manager; the reverse does nothing (loses the text)."""

    dependencies = [("ma_default_manager", "0001_initial")]
    operations = [migrations.RunPython(rewrite, migrations.RunPython.noop)]
