from django.db import migrations


class Migration(migrations.Migration):
    """Insert a note whose subscription does not exist (a deferred foreign-key violation)."""

    dependencies = [("ma_orphan", "0001_initial")]
    operations = [
        migrations.RunSQL(
            "INSERT INTO ma_notes (subscription_id, text) VALUES (987654321, 'orphan')",
            "DELETE FROM ma_notes WHERE text = 'orphan'",
        ),
    ]
