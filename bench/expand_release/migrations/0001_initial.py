from django.db import migrations, models
import django.db.models.deletion


class Migration(migrations.Migration):
    """The release before: ec_members and ec_subscriptions as the old code uses them."""

    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Member",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("email", models.CharField(max_length=100)),
                ("joined_at", models.DateTimeField()),
            ],
            options={"db_table": "ec_members"},
        ),
        migrations.CreateModel(
            name="Plan",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("member", models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, to="expand_release.member")),
                ("plan_name", models.CharField(max_length=30, db_index=True)),
                ("seats", models.IntegerField(default=1)),
                ("currency", models.CharField(max_length=3, null=True)),
                ("legacy_code", models.CharField(max_length=20, default="x")),
                ("started_at", models.DateTimeField()),
            ],
            options={"db_table": "ec_subscriptions"},
        ),
    ]
