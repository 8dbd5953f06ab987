from django.db import migrations, models


class Migration(migrations.Migration):
    """Checksums of applied migration files, to flag a migration edited after it was applied."""

    initial = True

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="AppliedMigrationChecksum",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("app", models.CharField(max_length=255)),
                ("name", models.CharField(max_length=255)),
                ("sha256", models.CharField(max_length=64)),
                ("applied_at", models.DateTimeField()),
                ("baseline", models.BooleanField(default=False)),
            ],
            options={
                "db_table": "migrations_ops_applied_checksum",
                "constraints": [
                    models.UniqueConstraint(fields=("app", "name"), name="migrations_ops_checksum_app_name_uniq")
                ],
            },
        ),
    ]
