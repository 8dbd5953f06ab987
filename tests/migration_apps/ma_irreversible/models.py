from django.db import models


class Bin(models.Model):
    label = models.CharField(max_length=50)

    class Meta:
        db_table = "ma_bins"
