from django.db import migrations


class Migration(migrations.Migration):
    """One of two leaves that need a merge migration."""

    dependencies = [("ma_conflict", "0001_initial")]
    operations = []
