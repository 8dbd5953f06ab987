from django.db import migrations, models


class Migration(migrations.Migration):
    """The release before: ma_gadgets as the old code uses it (applied before the online run)."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Gadget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=50, db_index=True)),
                ("qty", models.IntegerField(default=0)),
                ("note", models.CharField(max_length=100, null=True)),
                ("legacy", models.CharField(max_length=20, default="x")),
                ("code", models.CharField(max_length=30, default="")),
            ],
            options={"db_table": "ma_gadgets"},
        ),
    ]
