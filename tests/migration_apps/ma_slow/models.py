from django.db import models


class Tick(models.Model):
    n = models.IntegerField()

    class Meta:
        db_table = "ma_ticks"
