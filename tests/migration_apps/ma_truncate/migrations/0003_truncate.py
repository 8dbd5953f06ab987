from django.db import migrations


class Migration(migrations.Migration):
    """Empty ma_entries with TRUNCATE: no row is counted as deleted by the server's statistics."""

    dependencies = [("ma_truncate", "0002_rewrite")]
    operations = [migrations.RunSQL("TRUNCATE ma_entries", migrations.RunSQL.noop)]
