from django.db import migrations, models


class Migration(migrations.Migration):
    """A CHECK on a table in use: added NOT VALID, then validated online. Its VALIDATE fails when a
    row that violates it was written before the run (the online validate-phase failure test)."""

    dependencies = [("ma_online_phases", "0002_name_index")]
    operations = [
        migrations.AddConstraint(
            model_name="widget",
            constraint=models.CheckConstraint(condition=models.Q(size__gte=0), name="ma_widgets_size_non_negative"),
        )
    ]
