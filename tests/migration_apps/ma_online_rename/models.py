from django.db import models


class Gizmo(models.Model):
    title = models.CharField(max_length=50)

    class Meta:
        db_table = "ma_gizmos"
