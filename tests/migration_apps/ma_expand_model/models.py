from django.db import models


class Gizmo(models.Model):
    """The release after (migration 0002)."""

    name = models.CharField(max_length=50)
    size = models.IntegerField(default=1)
