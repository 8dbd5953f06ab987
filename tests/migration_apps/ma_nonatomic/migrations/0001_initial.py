from django.db import migrations, models


def fill_then_fail(apps, schema_editor):
    Gadget = apps.get_model("ma_nonatomic", "Gadget")
    Gadget.objects.using(schema_editor.connection.alias).create(name="half-done")
    raise RuntimeError("ma_nonatomic 0001 fails on purpose after creating ma_gadgets")


class Migration(migrations.Migration):
    """Create ma_gadgets outside a transaction, write a row, then fail."""

    atomic = False
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Gadget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
            ],
            options={"db_table": "ma_gadgets"},
        ),
        migrations.RunPython(fill_then_fail, migrations.RunPython.noop),
    ]
