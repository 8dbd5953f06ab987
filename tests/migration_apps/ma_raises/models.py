from django.db import models


class Widget(models.Model):
    name = models.CharField(max_length=60)
    size = models.IntegerField(null=True)

    class Meta:
        db_table = "ma_widgets"
