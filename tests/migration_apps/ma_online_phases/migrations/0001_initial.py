from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ma_widgets (applied before the online run: a table the application uses)."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Widget",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=50)),
                ("size", models.IntegerField(db_default=0)),
            ],
            options={"db_table": "ma_widgets"},
        ),
    ]
