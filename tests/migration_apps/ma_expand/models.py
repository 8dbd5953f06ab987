from django.db import models


class Gadget(models.Model):
    """The release after (migration 0002): what the new code reads and writes."""

    title = models.CharField(max_length=50, db_index=True)
    qty = models.BigIntegerField(default=0)
    note = models.CharField(max_length=100, default="")
    status = models.CharField(max_length=10, default="new")
    code = models.CharField(max_length=60, default="")

    class Meta:
        db_table = "ma_gadgets"
