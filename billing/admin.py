"""Admin for billing: PricingConfig is editable; the rest is read-mostly.

Tables here can hold millions of rows, so changelists avoid the exact-count query
(`show_full_result_count = False`), join their foreign keys in one query
(`list_select_related`) and never render a foreign-key dropdown of every user (`raw_id_fields`).
"""

from __future__ import annotations

import datetime
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db import models
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from billing.models import PaymentIntent, PricingConfig, StripeEvent, Subscription, SubscriptionCostHistory
from billing.pricing import preview_config
from common.admin import ReadOnlyModelAdmin


class PricingConfigForm(forms.ModelForm):
    """The model's `clean()` (window and overlap checks) runs in `_post_clean`; an overlap names the
    clashing config above the fieldsets and marks the date field(s) inside its window."""

    class Meta:
        model = PricingConfig
        fields = "__all__"


def _percent(rate: Decimal) -> str:
    """A rate fraction as a percentage without trailing zeros: 0.0800 -> 8%, 0.0725 -> 7.25%."""
    percent = (rate * 100).normalize()
    return f"{percent:f}%"


def _moment(value: datetime.datetime) -> str:
    """The date, with the time only when it is not midnight (in the current time zone)."""
    local = timezone.localtime(value)
    return f"{local:%Y-%m-%d}" if local.time() == datetime.time(0) else f"{local:%Y-%m-%d %H:%M}"


@admin.register(PricingConfig)
class PricingConfigAdmin(admin.ModelAdmin):
    form = PricingConfigForm
    # Six columns that fit 1400 px beside the filters: the price parts in one, the window in one.
    list_display = ["name", "plan", "variant", "prices", "window", "active"]
    list_filter = ["plan", "variant_id", "is_active"]
    search_fields = ["name", "plan", "variant_id", "variant_name"]
    list_select_related = ["created_by"]
    readonly_fields = ["created_by", "created_at", "updated_at", "impact", "history_links"]
    date_hierarchy = "effective_from"
    actions = ["preview_impact"]
    preview_template = "admin/billing/pricingconfig/preview.html"
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
        ("Impact and history", {"fields": ("impact", "history_links")}),
        ("Audit", {"fields": ("created_by", "created_at", "updated_at")}),
    )

    # --- the changelist's compact columns ---

    @admin.display(description="Variant", ordering="variant_id")
    def variant(self, obj: PricingConfig) -> str:
        return obj.variant_id

    @admin.display(description="Prices", ordering="base_price")
    def prices(self, obj: PricingConfig) -> str:
        """`USD 9.99 + 2.00 delivery, tax 8%, -10%`: the parts that are not zero."""
        parts = [f"{obj.currency} {obj.base_price}" + (f" + {obj.delivery_fee} delivery" if obj.delivery_fee else "")]
        if obj.tax_rate:
            parts.append(f"tax {_percent(obj.tax_rate)}")
        if obj.discount_rate:
            parts.append(f"-{_percent(obj.discount_rate)}")
        return ", ".join(parts)

    @admin.display(description="Window", ordering="effective_from")
    def window(self, obj: PricingConfig) -> str:
        """`2026-01-01 → 2026-12-31`, or `2026-01-01 → open-ended` (half-open: until is exclusive), on
        one line (the admin's `nowrap` class): a window broken at its hyphens reads as two."""
        until = _moment(obj.effective_until) if obj.effective_until else "open-ended"
        return format_html('<span class="nowrap">{} → {}</span>', _moment(obj.effective_from), until)

    @admin.display(description="Active", boolean=True, ordering="is_active")
    def active(self, obj: PricingConfig) -> bool:
        return obj.is_active

    # --- impact preview: what the config would do to its plan/variant's subscriptions, writing nothing ---

    def get_urls(self):
        preview = self.admin_site.admin_view(self.preview_view)
        return [path("<path:object_id>/preview/", preview, name="billing_pricingconfig_preview"), *super().get_urls()]

    def render_preview(self, request, configs):
        previews = [preview_config(config) for config in configs]
        context = {
            **self.admin_site.each_context(request),
            "title": "Impact preview",
            "opts": self.model._meta,
            "previews": previews,
        }
        return TemplateResponse(request, self.preview_template, context)

    def preview_view(self, request, object_id):
        config = self.get_object(request, object_id)
        if config is None or not self.has_view_permission(request, config):
            raise PermissionDenied
        return self.render_preview(request, [config])

    @admin.action(description="Preview impact (subscriptions affected, MRR before and after)", permissions=["view"])
    def preview_impact(self, request, queryset):
        return self.render_preview(request, list(queryset.order_by("plan", "variant_id", "effective_from")[:50]))

    @admin.display(description="Impact")
    def impact(self, obj: PricingConfig):
        if not obj.pk:
            return "Save the config (inactive, or with a future window) to preview its impact."
        url = reverse("admin:billing_pricingconfig_preview", args=[obj.pk])
        return format_html('<a href="{}">Preview subscriptions affected and MRR before/after</a>', url)

    @admin.display(description="History")
    def history_links(self, obj: PricingConfig):
        if not obj.pk:
            return "-"
        changes = reverse("admin:billing_pricingconfig_history", args=[obj.pk])
        costs = reverse("admin:billing_subscriptioncosthistory_changelist") + f"?pricing_config__id__exact={obj.pk}"
        count = obj.cost_history.count()
        return format_html(
            '<a href="{}">Changes to this config</a> &middot; <a href="{}">{} subscription cost changes</a>',
            changes,
            costs,
            count,
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
    # Every amount (price and the cost breakdown) is the pricing engine's result, never typed in.
    readonly_fields = [
        *(f.name for f in Subscription._meta.concrete_fields if isinstance(f, models.DecimalField)),
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
    list_filter = ["reason", "pricing_config"]
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


@admin.register(StripeEvent)
class StripeEventAdmin(ReadOnlyModelAdmin):
    list_display = ["event_id", "type", "outcome", "stripe_payment_intent_id", "created", "processed_at"]
    list_filter = ["outcome", "type"]
    search_fields = ["=event_id", "=stripe_payment_intent_id"]
