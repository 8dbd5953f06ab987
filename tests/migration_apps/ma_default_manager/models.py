from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=40)

    class Meta:
        db_table = "ma_notes"
