from django.db import models


class Shelf(models.Model):
    label = models.CharField(max_length=20)

    class Meta:
        db_table = "ma_shelves"


class Book(models.Model):
    shelf = models.ForeignKey(Shelf, on_delete=models.CASCADE)
    title = models.CharField(max_length=200)
    pages = models.IntegerField(null=True)

    class Meta:
        db_table = "ma_books"
