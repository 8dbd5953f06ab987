import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    """Create ma_notes (foreign key to subscriptions, deferred on PostgreSQL)."""

    dependencies = [("billing", "0004_default_pricing_configs")]
    operations = [
        migrations.CreateModel(
            name="Note",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("text", models.CharField(max_length=50)),
                (
                    "subscription",
                    models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="billing.subscription"),
                ),
            ],
            options={"db_table": "ma_notes"},
        ),
    ]
