"""Subscriptions, pricing configs, cost history and Stripe payment intents."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from common.constraints import between, non_negative, one_of
from common.money import MoneyField, RateField

# The choices live at module level because each model's Meta builds its check constraint from them
# (a nested class's body cannot see its enclosing class's names); the models keep their nested
# names (Subscription.Status, ...) as aliases, the way callers spell them.


class Plan(models.TextChoices):
    BASIC = "basic", "Basic"
    STANDARD = "standard", "Standard"
    PREMIUM = "premium", "Premium"


class SubscriptionStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    PAST_DUE = "past_due", "Past due"
    CANCELLED = "cancelled", "Cancelled"


class BillingInterval(models.TextChoices):
    MONTH = "month", "Monthly"
    YEAR = "year", "Yearly"


class DeliveryFrequency(models.TextChoices):
    WEEKLY = "weekly", "Weekly"
    BIWEEKLY = "biweekly", "Every two weeks"
    MONTHLY = "monthly", "Monthly"


# the cost breakdown's columns (total = base + delivery + tax - discount - loyalty_discount)
COST_FIELDS = ("base_cost", "delivery_cost", "tax_amount", "discount_amount", "loyalty_discount", "total_cost")


class Subscription(models.Model):
    Status = SubscriptionStatus
    BillingInterval = BillingInterval
    DeliveryFrequency = DeliveryFrequency

    # --- baseline columns (billing 0001): what production had before the upgrade ---
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="subscriptions")
    plan = models.CharField(max_length=32, choices=Plan.choices, db_index=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    price = MoneyField()
    currency = models.CharField(max_length=3, default="USD")
    billing_interval = models.CharField(max_length=8, choices=BillingInterval.choices, default=BillingInterval.MONTH)
    started_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    # --- the fourteen columns of billing 0002 (all nullable or with a constant default, so
    #     adding them never rewrites the table on PostgreSQL) ---
    # variant tracking
    variant_id = models.CharField(max_length=64, null=True, blank=True)
    variant_name = models.CharField(max_length=128, null=True, blank=True)
    pricing_config = models.ForeignKey(
        "billing.PricingConfig", null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions"
    )
    # cost breakdown (total = base + delivery + tax - discount - loyalty_discount)
    base_cost = MoneyField(null=True, blank=True)
    delivery_cost = MoneyField(null=True, blank=True)
    tax_amount = MoneyField(null=True, blank=True)
    discount_amount = MoneyField(null=True, blank=True)
    loyalty_discount = MoneyField(null=True, blank=True)
    total_cost = MoneyField(null=True, blank=True)
    # delivery management
    delivery_frequency = models.CharField(max_length=16, choices=DeliveryFrequency.choices, null=True, blank=True)
    next_delivery_date = models.DateField(null=True, blank=True)
    delivery_address = models.JSONField(null=True, blank=True)
    # loyalty integration
    loyalty_account = models.ForeignKey(
        "loyalty.LoyaltyAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="subscriptions"
    )
    # db_default: code that predates the column keeps inserting subscriptions during a deploy.
    points_earned = models.IntegerField(default=0, db_default=0)

    class Meta:
        db_table = "subscriptions"
        indexes = [
            models.Index(fields=["plan", "variant_id"], name="subscriptions_plan_variant"),
            models.Index(fields=["next_delivery_date"], name="subscriptions_next_delivery"),
        ]
        constraints = [
            non_negative("price", name="subscriptions_price_non_negative"),
            one_of("status", SubscriptionStatus, name="subscriptions_status_valid"),
            one_of("billing_interval", BillingInterval, name="subscriptions_interval_valid"),
            non_negative(*COST_FIELDS, nullable=True, name="subscriptions_costs_non_negative"),
            non_negative("points_earned", name="subscriptions_points_non_negative"),
            one_of(
                "delivery_frequency", DeliveryFrequency, nullable=True, name="subscriptions_delivery_frequency_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.plan} subscription #{self.pk}"


class PricingConfig(models.Model):
    """Admin-configurable price of a plan variant over a window of time."""

    name = models.CharField(max_length=128)
    plan = models.CharField(max_length=32, choices=Plan.choices, db_index=True)
    variant_id = models.CharField(max_length=64, default="default", db_index=True)
    variant_name = models.CharField(max_length=128, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    base_price = MoneyField()
    delivery_fee = MoneyField(default=0)
    tax_rate = RateField(default=0)
    discount_rate = RateField(default=0)
    # Extra discount rules, e.g. {"min_months": 12, "rate": "0.10"}; the pricing service reads them.
    discount_rules = models.JSONField(default=dict, blank=True)
    loyalty_points_per_unit = models.DecimalField(max_digits=8, decimal_places=2, default=1)
    effective_from = models.DateTimeField(default=timezone.now)
    effective_until = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True, db_index=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "pricing_configs"
        ordering = ["plan", "variant_id", "-effective_from"]
        constraints = [
            non_negative("base_price", name="pricing_configs_base_price_non_negative"),
            non_negative("delivery_fee", name="pricing_configs_delivery_fee_non_negative"),
            between("tax_rate", 0, 1, name="pricing_configs_tax_rate_range"),
            between("discount_rate", 0, 1, name="pricing_configs_discount_rate_range"),
            non_negative("loyalty_points_per_unit", name="pricing_configs_points_non_negative"),
            models.CheckConstraint(
                condition=Q(effective_until__isnull=True) | Q(effective_until__gt=models.F("effective_from")),
                name="pricing_configs_window_valid",
            ),
            one_of("plan", Plan, name="pricing_configs_plan_valid"),
            # PostgreSQL additionally has the exclusion constraint
            # pricing_configs_no_active_overlap (billing 0002, PostgreSQL only).
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.plan}/{self.variant_id})"

    def overlapping_active(self) -> models.QuerySet[PricingConfig]:
        """Other active configs of the same plan and variant whose window meets this one's."""
        qs = PricingConfig.objects.filter(plan=self.plan, variant_id=self.variant_id, is_active=True)
        if self.pk:
            qs = qs.exclude(pk=self.pk)
        # Windows are half-open [from, until); a missing `until` is open-ended.
        qs = qs.filter(Q(effective_until__isnull=True) | Q(effective_until__gt=self.effective_from))
        if self.effective_until is not None:
            qs = qs.filter(effective_from__lt=self.effective_until)
        return qs

    def clean(self) -> None:
        super().clean()
        if self.effective_from and self.effective_until and self.effective_until <= self.effective_from:
            raise ValidationError({"effective_until": "must be later than effective from"})
        if self.is_active and self.plan and self.effective_from:
            clash = self.overlapping_active().first()
            if clash is not None:
                until = f"{clash.effective_until:%Y-%m-%d %H:%M}" if clash.effective_until else "open-ended"
                span = f"{clash.name!r} (#{clash.pk}, {clash.effective_from:%Y-%m-%d %H:%M} to {until})"
                message = (
                    f"An active pricing config for {self.plan}/{self.variant_id} already covers part of "
                    f"this window: {span}. Deactivate it or choose a window that does not overlap."
                )
                # The summary above the form, and a short note on each bound that lies in the clash.
                errors: dict[str, str] = {NON_FIELD_ERRORS: message}
                for field in self.window_bounds_within(clash):
                    errors[field] = f"Overlaps the active config {span}."
                raise ValidationError(errors, code="overlap")

    def window_bounds_within(self, other: PricingConfig) -> list[str]:
        """The bounds of this window (`effective_from`, `effective_until`) that lie inside ``other``'s
        window, to fix one of them; both when ``other`` lies wholly inside this one."""
        ends = other.effective_until
        start_inside = other.effective_from <= self.effective_from and (ends is None or self.effective_from < ends)
        if self.effective_until is None:
            end_inside = ends is None  # open-ended: runs into every window that does not end
        else:
            end_inside = other.effective_from < self.effective_until and (ends is None or self.effective_until <= ends)
        inside = {"effective_from": start_inside, "effective_until": end_inside}
        return [name for name, is_inside in inside.items() if is_inside] or list(inside)


class CostChangeReason(models.TextChoices):
    BACKFILL = "backfill", "Backfill"
    PRICING_CHANGE = "pricing_change", "Pricing change"
    PLAN_CHANGE = "plan_change", "Plan change"
    LOYALTY = "loyalty", "Loyalty discount"
    MANUAL = "manual", "Manual adjustment"


class SubscriptionCostHistory(models.Model):
    """One row per change of a subscription's cost: old and new breakdown, why, who, when."""

    Reason = CostChangeReason

    subscription = models.ForeignKey(Subscription, on_delete=models.CASCADE, related_name="cost_history")
    old_breakdown = models.JSONField(null=True, blank=True)
    new_breakdown = models.JSONField()
    old_total = MoneyField(null=True, blank=True)
    new_total = MoneyField()
    reason = models.CharField(max_length=32, choices=Reason.choices, db_index=True)
    pricing_config = models.ForeignKey(
        PricingConfig, null=True, blank=True, on_delete=models.SET_NULL, related_name="cost_history"
    )
    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    changed_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "subscription_cost_history"
        ordering = ["-changed_at"]
        verbose_name_plural = "subscription cost history"
        constraints = [
            non_negative("new_total", name="cost_history_new_total_non_negative"),
            non_negative("old_total", nullable=True, name="cost_history_old_total_non_negative"),
        ]


class PaymentStatus(models.TextChoices):
    """Stripe's PaymentIntent statuses."""

    REQUIRES_PAYMENT_METHOD = "requires_payment_method", "Requires payment method"
    REQUIRES_CONFIRMATION = "requires_confirmation", "Requires confirmation"
    REQUIRES_ACTION = "requires_action", "Requires action"
    PROCESSING = "processing", "Processing"
    REQUIRES_CAPTURE = "requires_capture", "Requires capture"
    CANCELED = "canceled", "Canceled"
    SUCCEEDED = "succeeded", "Succeeded"


class PaymentIntent(models.Model):
    """A Stripe PaymentIntent as our webhooks last saw it. No card data is ever stored."""

    Status = PaymentStatus
    FINAL_STATUSES = frozenset({Status.CANCELED, Status.SUCCEEDED})

    stripe_payment_intent_id = models.CharField(max_length=255, unique=True)
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="payment_intents"
    )
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="payment_intents")
    amount = models.BigIntegerField(help_text="Stripe minor units (cents)")
    amount_received = models.BigIntegerField(default=0, help_text="Stripe minor units (cents)")
    currency = models.CharField(max_length=3, default="usd")
    status = models.CharField(max_length=32, choices=Status.choices, db_index=True)
    failure_code = models.CharField(max_length=64, blank=True)
    failure_message = models.TextField(blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    last_event_id = models.CharField(max_length=255, blank=True)
    last_event_created = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    succeeded_at = models.DateTimeField(null=True, blank=True)
    # Refunds (charge.amount_refunded, cumulative) and lost disputes take back the points the payment
    # earned. db_default: old code keeps inserting during a deploy.
    amount_refunded = models.BigIntegerField(default=0, db_default=0, help_text="Stripe minor units")
    amount_disputed_lost = models.BigIntegerField(default=0, db_default=0, help_text="Stripe minor units")

    class Meta:
        db_table = "payment_intents"
        ordering = ["-created_at"]
        constraints = [
            non_negative("amount", name="payment_intents_amount_non_negative"),
            non_negative("amount_received", name="payment_intents_received_non_negative"),
            one_of("status", PaymentStatus, name="payment_intents_status_valid"),
        ]

    def __str__(self) -> str:
        return self.stripe_payment_intent_id


class StripeEventOutcome(models.TextChoices):
    APPLIED = "applied", "Applied"
    STALE = "stale", "Stale (older than the intent's state, or the intent is final)"
    IGNORED = "ignored", "Ignored (not a payment intent event, or no user to attach it to)"
    # Not counted as processed: a redelivery is checked again (the configuration may be fixed).
    REFUSED = "refused", "Refused (livemode differs from STRIPE_LIVEMODE)"


class StripeEvent(models.Model):
    """A Stripe webhook event we have processed: the unique event id makes redelivery a no-op."""

    Outcome = StripeEventOutcome

    event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=128, db_index=True)
    created = models.DateTimeField(help_text="when Stripe created the event")
    processed_at = models.DateTimeField(default=timezone.now)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    stripe_payment_intent_id = models.CharField(max_length=255, blank=True, db_index=True)

    class Meta:
        db_table = "stripe_events"
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.event_id} ({self.type})"
