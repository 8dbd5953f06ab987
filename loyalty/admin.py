"""Read-only admin for loyalty: balances change only through the points ledger."""

from __future__ import annotations

from django.contrib import admin

from common.admin import ReadOnlyModelAdmin
from loyalty.models import LoyaltyAccount, PointsTransaction


@admin.register(LoyaltyAccount)
class LoyaltyAccountAdmin(ReadOnlyModelAdmin):
    list_display = ["user", "points_balance", "lifetime_points", "tier", "updated_at"]
    list_filter = ["tier"]
    search_fields = ["user__email"]
    list_select_related = ["user"]


@admin.register(PointsTransaction)
class PointsTransactionAdmin(ReadOnlyModelAdmin):
    list_display = ["id", "account", "kind", "points", "balance_after", "subscription", "created_at"]
    list_filter = ["kind"]
    search_fields = ["account__user__email"]
    list_select_related = ["account__user", "subscription"]
