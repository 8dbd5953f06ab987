from django.db import migrations, models


def fill(apps, schema_editor):
    Bin = apps.get_model("ma_irreversible", "Bin")
    Bin.objects.using(schema_editor.connection.alias).create(label="first")


class Migration(migrations.Migration):
    """Create ma_bins and fill it with a RunPython that has no reverse (irreversible)."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Bin",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=50)),
            ],
            options={"db_table": "ma_bins"},
        ),
        migrations.RunPython(fill),
    ]
