from django.db import migrations


class Migration(migrations.Migration):
    """Empty root of two conflicting leaves."""

    operations = []
