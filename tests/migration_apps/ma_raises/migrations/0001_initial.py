from django.db import migrations, models


def add_widgets(apps, schema_editor):
    Widget = apps.get_model("ma_raises", "Widget")
    Widget.objects.using(schema_editor.connection.alias).bulk_create(
        Widget(name=name) for name in ("bolt", "nut", "washer")
    )


class Migration(migrations.Migration):
    """Create ma_widgets with three rows."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
            ],
            options={"db_table": "ma_widgets"},
        ),
        migrations.RunPython(add_widgets, migrations.RunPython.noop),
    ]
