from django.db import models


class Entry(models.Model):
    """Like wagtail's search index entry: a managed model over a full-text virtual table (SQLite)
    or a view (PostgreSQL), whose columns declare no NOT NULL."""

    rowid = models.BigAutoField(primary_key=True)
    title = models.TextField()
    body = models.TextField()

    class Meta:
        db_table = "ma_entries_search"


class Source(models.Model):
    title = models.TextField()

    class Meta:
        managed = False
        db_table = "ma_external_sources"


class ShortEntry(Entry):
    class Meta:
        proxy = True
