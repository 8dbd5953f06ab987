from django.db import models


class Tag(models.Model):
    name = models.CharField(max_length=20)


class Gadget(models.Model):
    """Created as Widget (0001), renamed to Gadget (0002), then given the table ma_gadgets (0003)."""

    title = models.CharField(max_length=50)
    tags = models.ManyToManyField(Tag)

    class Meta:
        db_table = "ma_gadgets"


class Note(models.Model):
    widget = models.ForeignKey(Gadget, on_delete=models.CASCADE)
