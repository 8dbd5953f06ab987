from django.db import models


class Gadget(models.Model):
    name = models.CharField(max_length=80)
    size = models.IntegerField(default=0)

    class Meta:
        db_table = "ma_gadgets"
