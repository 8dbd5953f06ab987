from django.db import migrations, models


class Migration(migrations.Migration):
    """Add ma_books.pages outside a transaction (like wagtailcore 0070, atomic = False)."""

    atomic = False
    dependencies = [("ma_mixed", "0001_initial")]
    operations = [migrations.AddField("book", "pages", models.IntegerField(null=True))]
