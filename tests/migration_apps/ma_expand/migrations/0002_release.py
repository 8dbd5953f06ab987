from django.db import migrations, models


class Migration(migrations.Migration):
    """The release after: every kind of change the old code cannot survive in one step, and one it can."""

    dependencies = [("ma_expand", "0001_initial")]
    operations = [
        migrations.RenameField(model_name="gadget", old_name="label", new_name="title"),
        migrations.AlterField(model_name="gadget", name="qty", field=models.BigIntegerField(default=0)),
        migrations.AlterField(model_name="gadget", name="note", field=models.CharField(max_length=100, default="")),
        migrations.RemoveField(model_name="gadget", name="legacy"),
        migrations.AddField(model_name="gadget", name="status", field=models.CharField(max_length=10, default="new")),
        migrations.AlterField(model_name="gadget", name="code", field=models.CharField(max_length=60, default="")),
    ]
