"""Daily metrics: one row per day and table (definitions in README.md, "Analytics")."""

from __future__ import annotations

from django.db import models

from common.constraints import between, non_negative
from common.money import MoneyField


def RatioField() -> models.DecimalField:  # noqa: N802 - reads like a field class
    """A share in [0, 1] with six places (churn, success rate); 0 until computed."""
    return models.DecimalField(max_digits=7, decimal_places=6, default=0)


class DailyMetrics(models.Model):
    """One row per day, newest first, stamped with when it was (re)computed.

    Fields inherited from here come first in a model's field order (date, computed_at, then its own
    metrics); the tables' columns are the migrations', and seeding writes by column name.
    """

    date = models.DateField(unique=True)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
        ordering = ["-date"]


class SubscriptionAnalytics(DailyMetrics):
    active_subscriptions = models.IntegerField(default=0)
    new_subscriptions = models.IntegerField(default=0)
    cancelled_subscriptions = models.IntegerField(default=0)
    paused_subscriptions = models.IntegerField(default=0)
    mrr = MoneyField(default=0, help_text="monthly recurring revenue at the end of the day")
    churn_rate = RatioField()

    class Meta(DailyMetrics.Meta):
        db_table = "subscription_analytics"
        verbose_name_plural = "subscription analytics"
        constraints = [
            non_negative(
                "active_subscriptions",
                "new_subscriptions",
                "cancelled_subscriptions",
                "paused_subscriptions",
                name="subscription_analytics_counts_non_negative",
            ),
            non_negative("mrr", name="subscription_analytics_mrr_non_negative"),
            between("churn_rate", 0, 1, name="subscription_analytics_churn_range"),
        ]


class PaymentAnalytics(DailyMetrics):
    total_payments = models.IntegerField(default=0)
    succeeded_payments = models.IntegerField(default=0)
    failed_payments = models.IntegerField(default=0)
    volume_minor = models.BigIntegerField(default=0, help_text="attempted amount, minor units")
    succeeded_volume_minor = models.BigIntegerField(default=0, help_text="received amount, minor units")
    success_rate = RatioField()

    class Meta(DailyMetrics.Meta):
        db_table = "payment_analytics"
        verbose_name_plural = "payment analytics"
        constraints = [
            non_negative(
                "total_payments", "succeeded_payments", "failed_payments", name="payment_analytics_counts_non_negative"
            ),
            non_negative("volume_minor", "succeeded_volume_minor", name="payment_analytics_volume_non_negative"),
            between("success_rate", 0, 1, name="payment_analytics_success_range"),
        ]


class PaymentCurrencyAnalytics(models.Model):
    """Payment volume per day and currency: minor units of different currencies are never added up
    (a yen is not a cent); payment_analytics keeps counts across currencies."""

    date = models.DateField()
    currency = models.CharField(max_length=3, help_text="lower-case ISO code, as Stripe sends it")
    total_payments = models.IntegerField(default=0)
    succeeded_payments = models.IntegerField(default=0)
    volume_minor = models.BigIntegerField(default=0, help_text="attempted amount, minor units of the currency")
    succeeded_volume_minor = models.BigIntegerField(default=0, help_text="received amount, minor units")
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "payment_currency_analytics"
        ordering = ["-date", "currency"]
        verbose_name_plural = "payment analytics per currency"
        constraints = [
            models.UniqueConstraint(fields=["date", "currency"], name="payment_currency_analytics_day_currency"),
            non_negative(
                "total_payments",
                "succeeded_payments",
                "volume_minor",
                "succeeded_volume_minor",
                name="payment_currency_analytics_non_negative",
            ),
        ]
