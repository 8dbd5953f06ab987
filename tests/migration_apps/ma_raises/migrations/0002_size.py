from django.db import migrations, models
from django.db.models.functions import Length


def fill_size(apps, schema_editor):
    Widget = apps.get_model("ma_raises", "Widget")
    Widget.objects.using(schema_editor.connection.alias).update(size=Length("name"))


class Migration(migrations.Migration):
    """Add ma_widgets.size and fill it."""

    dependencies = [("ma_raises", "0001_initial")]
    operations = [
        migrations.AddField("widget", "size", models.IntegerField(null=True)),
        migrations.RunPython(fill_size, migrations.RunPython.noop),
    ]
