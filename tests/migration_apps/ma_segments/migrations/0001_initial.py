from django.db import migrations, models


def add_parts(apps, schema_editor):
    Part = apps.get_model("ma_segments", "Part")
    Part.objects.using(schema_editor.connection.alias).bulk_create(Part(name=n) for n in ("gear", "axle"))


class Migration(migrations.Migration):
    """Create ma_parts with two rows (atomic, reversible)."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Part",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
            ],
            options={"db_table": "ma_parts"},
        ),
        migrations.RunPython(add_parts, migrations.RunPython.noop),
    ]
