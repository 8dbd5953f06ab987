from django.db import models


class Revision(models.Model):
    title = models.CharField(max_length=50)
