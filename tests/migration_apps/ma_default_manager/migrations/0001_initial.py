from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ma_notes."""

    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", models.CharField(max_length=40)),
            ],
            options={"db_table": "ma_notes"},
        ),
    ]
