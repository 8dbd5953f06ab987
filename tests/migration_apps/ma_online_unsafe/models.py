from django.db import models


class Gadget(models.Model):
    name = models.CharField(max_length=20)
    size = models.IntegerField()

    class Meta:
        db_table = "ma_gadgets"
