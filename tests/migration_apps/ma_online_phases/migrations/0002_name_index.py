from django.db import migrations, models


class Migration(migrations.Migration):
    """An index on a table in use: built CONCURRENTLY online (an INVALID leftover is rebuilt)."""

    dependencies = [("ma_online_phases", "0001_initial"), ("billing", "0008_points_earned_database_default")]
    operations = [
        migrations.AddIndex(model_name="widget", index=models.Index(fields=["name"], name="ma_widgets_name_idx"))
    ]
