"""Admin for billing: PricingConfig is editable; the rest is read-mostly.

Tables here can hold millions of rows, so changelists avoid the exact-count query
(`show_full_result_count = False`), join their foreign keys in one query
(`list_select_related`) and never render a foreign-key dropdown of every user (`raw_id_fields`).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from billing.models import PaymentIntent, PricingConfig, Subscription, SubscriptionCostHistory


class ReadOnlyModelAdmin(admin.ModelAdmin):
    """View-only: rows are written by the application, webhooks or migrations, never by hand."""

    show_full_result_count = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class PricingConfigForm(forms.ModelForm):
    """The model's `clean()` (window and overlap checks) runs in `_post_clean`; an overlap is a
    plain ValidationError, so the form shows it as a non-field error above the fieldsets."""

    class Meta:
        model = PricingConfig
        fields = "__all__"


@admin.register(PricingConfig)
class PricingConfigAdmin(admin.ModelAdmin):
    form = PricingConfigForm
    list_display = [
        "name",
        "plan",
        "variant_id",
        "base_price",
        "delivery_fee",
        "tax_rate",
        "discount_rate",
        "effective_from",
        "effective_until",
        "is_active",
    ]
    list_filter = ["plan", "variant_id", "is_active"]
    search_fields = ["name", "plan", "variant_id", "variant_name"]
    list_select_related = ["created_by"]
    readonly_fields = ["created_by", "created_at", "updated_at"]
    date_hierarchy = "effective_from"
    fieldsets = (
        (None, {"fields": ("name", "plan", "variant_id", "variant_name", "is_active")}),
        (
            "Price",
            {
                "fields": (
                    "currency",
                    "base_price",
                    "delivery_fee",
                    "tax_rate",
                    "discount_rate",
                    "discount_rules",
                    "loyalty_points_per_unit",
                )
            },
        ),
        ("Window (half-open: from inclusive, until exclusive)", {"fields": ("effective_from", "effective_until")}),
        ("Audit", {"fields": ("created_by", "created_at", "updated_at")}),
    )

    def save_model(self, request, obj: PricingConfig, form, change: bool) -> None:
        if not change and obj.created_by_id is None:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "user",
        "plan",
        "variant_id",
        "status",
        "billing_interval",
        "price",
        "total_cost",
        "started_at",
        "cancelled_at",
    ]
    list_filter = ["plan", "status", "billing_interval", "delivery_frequency"]
    search_fields = ["user__email"]
    raw_id_fields = ["user", "pricing_config", "loyalty_account"]
    list_select_related = ["user"]
    show_full_result_count = False
    readonly_fields = [
        "price",
        "base_cost",
        "delivery_cost",
        "tax_amount",
        "discount_amount",
        "loyalty_discount",
        "total_cost",
        "points_earned",
        "created_at",
        "updated_at",
    ]

    def has_delete_permission(self, request, obj=None) -> bool:
        # Subscriptions are cancelled, not deleted: deleting would cascade their cost history.
        return False


@admin.register(SubscriptionCostHistory)
class SubscriptionCostHistoryAdmin(ReadOnlyModelAdmin):
    list_display = ["subscription", "reason", "old_total", "new_total", "pricing_config", "changed_by", "changed_at"]
    list_filter = ["reason"]
    search_fields = ["subscription__user__email"]
    list_select_related = ["subscription", "pricing_config", "changed_by"]
    date_hierarchy = "changed_at"


@admin.register(PaymentIntent)
class PaymentIntentAdmin(ReadOnlyModelAdmin):
    list_display = [
        "stripe_payment_intent_id",
        "user",
        "subscription",
        "amount",
        "amount_received",
        "currency",
        "status",
        "failure_code",
        "created_at",
    ]
    list_filter = ["status", "currency"]
    search_fields = ["=stripe_payment_intent_id", "user__email"]
    list_select_related = ["user", "subscription"]
