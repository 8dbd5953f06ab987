from django.db import models


class Entry(models.Model):
    """A managed model over an SQLite FTS5 virtual table (its rows live in shadow tables)."""

    rowid = models.BigAutoField(primary_key=True)
    title = models.TextField()
    body = models.TextField()

    class Meta:
        db_table = "ma_fts_entry"


class Doc(models.Model):
    """The same over an FTS4 virtual table."""

    rowid = models.BigAutoField(primary_key=True)
    body = models.TextField()

    class Meta:
        db_table = "ma_fts_doc"


class Box(models.Model):
    """An R*Tree virtual table (shadow tables _node, _rowid, _parent)."""

    id = models.BigAutoField(primary_key=True)
    min_x = models.FloatField()
    max_x = models.FloatField()

    class Meta:
        db_table = "ma_fts_box"
