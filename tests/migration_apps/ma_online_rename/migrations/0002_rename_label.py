from django.db import migrations


class Migration(migrations.Migration):
    """A column rename on a table in use: code that still reads the old name breaks, so --online refuses it."""

    dependencies = [("ma_online_rename", "0001_initial")]
    operations = [migrations.RenameField(model_name="gizmo", old_name="label", new_name="title")]
