"""Daily metrics: one row per day and table (definitions in README.md, "Analytics")."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from common.money import MoneyField


class SubscriptionAnalytics(models.Model):
    date = models.DateField(unique=True)
    active_subscriptions = models.IntegerField(default=0)
    new_subscriptions = models.IntegerField(default=0)
    cancelled_subscriptions = models.IntegerField(default=0)
    paused_subscriptions = models.IntegerField(default=0)
    mrr = MoneyField(default=0, help_text="monthly recurring revenue at the end of the day")
    churn_rate = models.DecimalField(max_digits=7, decimal_places=6, default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "subscription_analytics"
        ordering = ["-date"]
        verbose_name_plural = "subscription analytics"
        constraints = [
            models.CheckConstraint(
                condition=Q(active_subscriptions__gte=0)
                & Q(new_subscriptions__gte=0)
                & Q(cancelled_subscriptions__gte=0)
                & Q(paused_subscriptions__gte=0),
                name="subscription_analytics_counts_non_negative",
            ),
            models.CheckConstraint(condition=Q(mrr__gte=0), name="subscription_analytics_mrr_non_negative"),
            models.CheckConstraint(
                condition=Q(churn_rate__gte=0) & Q(churn_rate__lte=1), name="subscription_analytics_churn_range"
            ),
        ]


class PaymentAnalytics(models.Model):
    date = models.DateField(unique=True)
    total_payments = models.IntegerField(default=0)
    succeeded_payments = models.IntegerField(default=0)
    failed_payments = models.IntegerField(default=0)
    volume_minor = models.BigIntegerField(default=0, help_text="attempted amount, minor units")
    succeeded_volume_minor = models.BigIntegerField(default=0, help_text="received amount, minor units")
    success_rate = models.DecimalField(max_digits=7, decimal_places=6, default=0)
    computed_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "payment_analytics"
        ordering = ["-date"]
        verbose_name_plural = "payment analytics"
        constraints = [
            models.CheckConstraint(
                condition=Q(total_payments__gte=0) & Q(succeeded_payments__gte=0) & Q(failed_payments__gte=0),
                name="payment_analytics_counts_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(volume_minor__gte=0) & Q(succeeded_volume_minor__gte=0),
                name="payment_analytics_volume_non_negative",
            ),
            models.CheckConstraint(
                condition=Q(success_rate__gte=0) & Q(success_rate__lte=1), name="payment_analytics_success_range"
            ),
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
            models.CheckConstraint(
                condition=Q(total_payments__gte=0)
                & Q(succeeded_payments__gte=0)
                & Q(volume_minor__gte=0)
                & Q(succeeded_volume_minor__gte=0),
                name="payment_currency_analytics_non_negative",
            ),
        ]
