from django.db import migrations, models


def touch_gadgets(apps, schema_editor):
    apps.get_model("ma_online_unsafe", "Gadget").objects.using(schema_editor.connection.alias).update(name="x")


class Migration(migrations.Migration):
    """Three things the online path must refuse on a table in use: a NOT NULL column without any
    default (rows the old release inserts could not have it), an unbatched RunPython, and a column
    type change that narrows (a value the old release writes might not fit)."""

    dependencies = [("ma_online_unsafe", "0001_initial")]
    operations = [
        migrations.AddField(model_name="gadget", name="size", field=models.IntegerField()),
        migrations.RunPython(touch_gadgets, migrations.RunPython.noop),
        migrations.AlterField(model_name="gadget", name="name", field=models.CharField(max_length=20)),
    ]
