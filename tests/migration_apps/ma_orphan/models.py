from django.db import models


class Note(models.Model):
    subscription = models.ForeignKey("billing.Subscription", on_delete=models.CASCADE)
    text = models.CharField(max_length=50)

    class Meta:
        db_table = "ma_notes"
