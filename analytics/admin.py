"""Read-only admin for the daily metrics (computed, never edited by hand)."""

from __future__ import annotations

from django.contrib import admin

from analytics.models import PaymentAnalytics, PaymentCurrencyAnalytics, SubscriptionAnalytics
from common.admin import ReadOnlyModelAdmin


@admin.register(SubscriptionAnalytics)
class SubscriptionAnalyticsAdmin(ReadOnlyModelAdmin):
    list_display = [
        "date",
        "active_subscriptions",
        "new_subscriptions",
        "cancelled_subscriptions",
        "paused_subscriptions",
        "mrr",
        "churn_rate",
    ]
    date_hierarchy = "date"


@admin.register(PaymentAnalytics)
class PaymentAnalyticsAdmin(ReadOnlyModelAdmin):
    list_display = [
        "date",
        "total_payments",
        "succeeded_payments",
        "failed_payments",
        "volume_minor",
        "succeeded_volume_minor",
        "success_rate",
    ]
    date_hierarchy = "date"


@admin.register(PaymentCurrencyAnalytics)
class PaymentCurrencyAnalyticsAdmin(ReadOnlyModelAdmin):
    list_display = [
        "date",
        "currency",
        "total_payments",
        "succeeded_payments",
        "volume_minor",
        "succeeded_volume_minor",
    ]
    list_filter = ["currency"]
    date_hierarchy = "date"
