from django.db import models


class Widget(models.Model):
    name = models.CharField(max_length=50)
    size = models.IntegerField(db_default=0)

    class Meta:
        db_table = "ma_widgets"
        indexes = [models.Index(fields=["name"], name="ma_widgets_name_idx")]
        constraints = [models.CheckConstraint(condition=models.Q(size__gte=0), name="ma_widgets_size_non_negative")]
