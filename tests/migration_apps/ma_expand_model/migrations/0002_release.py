from django.db import migrations


class Migration(migrations.Migration):
    """The release after: parts are gone, widgets are gizmos (the table is renamed)."""

    dependencies = [("ma_expand_model", "0001_initial")]
    operations = [
        migrations.DeleteModel(name="Part"),
        migrations.RenameModel(old_name="Widget", new_name="Gizmo"),
    ]
