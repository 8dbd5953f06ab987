from django.db import migrations, models


class Migration(migrations.Migration):
    """The release after: a rename, int -> bigint, NULL -> NOT NULL, a removed field, a NOT NULL field added."""

    dependencies = [("expand_release", "0001_initial")]
    operations = [
        migrations.RenameField(model_name="plan", old_name="plan_name", new_name="plan"),
        migrations.AlterField(model_name="plan", name="seats", field=models.BigIntegerField(default=1)),
        migrations.AlterField(model_name="plan", name="currency", field=models.CharField(max_length=3, default="usd")),
        migrations.RemoveField(model_name="plan", name="legacy_code"),
        migrations.AddField(model_name="plan", name="status", field=models.CharField(max_length=10, default="active")),
    ]
