"""The release after (migration 0002): what the new code reads and writes."""

from django.db import models


class Member(models.Model):
    email = models.CharField(max_length=100)
    joined_at = models.DateTimeField()

    class Meta:
        db_table = "ec_members"


class Plan(models.Model):
    member = models.ForeignKey(Member, on_delete=models.CASCADE)
    plan = models.CharField(max_length=30, db_index=True)  # was plan_name
    seats = models.BigIntegerField(default=1)  # was an integer
    currency = models.CharField(max_length=3, default="usd")  # was nullable
    status = models.CharField(max_length=10, default="active")  # new, NOT NULL with a Python default
    started_at = models.DateTimeField()
    # legacy_code: removed

    class Meta:
        db_table = "ec_subscriptions"
