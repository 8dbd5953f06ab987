from django.db import migrations


class Migration(migrations.Migration):
    """As wagtail's 0070 (PageRevision -> Revision): the table and its many-to-many table are renamed, no row moves."""

    dependencies = [("ma_rename_model", "0001_initial")]
    operations = [migrations.RenameModel(old_name="Widget", new_name="Gadget")]
