from django.db import migrations


class Migration(migrations.Migration):
    """Rewrite ma_entries keeping its rows (a new relfilenode, every row still there): no loss."""

    dependencies = [("ma_truncate", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "ALTER TABLE ma_entries ALTER COLUMN text TYPE varchar(50) USING text || ''", migrations.RunSQL.noop
        ),
    ]
