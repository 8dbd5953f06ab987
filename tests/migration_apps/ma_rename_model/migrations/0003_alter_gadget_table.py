from django.db import migrations


class Migration(migrations.Migration):
    """An explicit db_table: the table and its auto-created many-to-many table are renamed again."""

    dependencies = [("ma_rename_model", "0002_rename_widget_gadget")]
    operations = [migrations.AlterModelTable(name="gadget", table="ma_gadgets")]
