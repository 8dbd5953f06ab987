from django.db import migrations, models


class Migration(migrations.Migration):
    """Widget (default table name) with an auto-created many-to-many table, a tag and a note pointing at it."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Tag",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=20)),
            ],
        ),
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("title", models.CharField(max_length=50)),
                ("tags", models.ManyToManyField(to="ma_rename_model.tag")),
            ],
        ),
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "widget",
                    models.ForeignKey(on_delete=models.deletion.CASCADE, to="ma_rename_model.widget"),
                ),
            ],
        ),
    ]
