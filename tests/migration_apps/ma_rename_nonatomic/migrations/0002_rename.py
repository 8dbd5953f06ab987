from django.db import migrations


class Migration(migrations.Migration):
    """Rename PageRevision to Revision outside a transaction, as wagtailcore 0070 does."""

    atomic = False
    dependencies = [("ma_rename_nonatomic", "0001_initial")]
    operations = [migrations.RenameModel("PageRevision", "Revision")]
