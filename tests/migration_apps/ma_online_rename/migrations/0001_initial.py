from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ma_gizmos (applied before the online run: a table the application uses)."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Gizmo",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("label", models.CharField(max_length=50)),
            ],
            options={"db_table": "ma_gizmos"},
        ),
    ]
