from django.db import models


class Part(models.Model):
    name = models.CharField(max_length=50)
    weight = models.IntegerField(null=True)

    class Meta:
        db_table = "ma_parts"
