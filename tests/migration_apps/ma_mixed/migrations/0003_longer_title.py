from django.db import migrations, models


class Migration(migrations.Migration):
    """Lengthen ma_books.title: on SQLite a table rebuild, which needs foreign-key checks off."""

    dependencies = [("ma_mixed", "0002_pages")]
    operations = [migrations.AlterField("book", "title", models.CharField(max_length=200))]
