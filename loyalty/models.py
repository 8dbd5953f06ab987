"""Loyalty accounts (one per user) and their points ledger."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from common.constraints import non_negative, one_of


class Tier(models.TextChoices):
    BRONZE = "bronze", "Bronze"
    SILVER = "silver", "Silver"
    GOLD = "gold", "Gold"
    PLATINUM = "platinum", "Platinum"


class LoyaltyAccount(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="loyalty_account")
    points_balance = models.IntegerField(default=0)
    lifetime_points = models.IntegerField(default=0)
    tier = models.CharField(max_length=16, choices=Tier.choices, default=Tier.BRONZE, db_index=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "loyalty_accounts"
        constraints = [
            non_negative("points_balance", name="loyalty_accounts_balance_non_negative"),
            non_negative("lifetime_points", name="loyalty_accounts_lifetime_non_negative"),
            one_of("tier", Tier, name="loyalty_accounts_tier_valid"),
        ]

    def __str__(self) -> str:
        return f"loyalty account of {self.user_id} ({self.points_balance} pts)"


# Module level, like Tier, so that the Meta's check constraint is built from it; the model keeps
# the name callers use (PointsTransaction.Kind).
class PointsKind(models.TextChoices):
    EARN = "earn", "Earn"
    REDEEM = "redeem", "Redeem"
    EXPIRE = "expire", "Expire"
    ADJUST = "adjust", "Adjust"


class PointsTransaction(models.Model):
    Kind = PointsKind

    account = models.ForeignKey(LoyaltyAccount, on_delete=models.CASCADE, related_name="transactions")
    points = models.IntegerField(help_text="signed: positive earns, negative spends")
    kind = models.CharField(max_length=16, choices=Kind.choices, db_index=True)
    subscription = models.ForeignKey(
        "billing.Subscription", null=True, blank=True, on_delete=models.SET_NULL, related_name="points_transactions"
    )
    payment_intent = models.ForeignKey(
        "billing.PaymentIntent",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="points_transactions",
    )
    balance_after = models.IntegerField()
    description = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        db_table = "points_transactions"
        ordering = ["account_id", "id"]
        constraints = [
            models.CheckConstraint(condition=~Q(points=0), name="points_transactions_points_non_zero"),
            non_negative("balance_after", name="points_transactions_balance_after_non_negative"),
            one_of("kind", PointsKind, name="points_transactions_kind_valid"),
            models.CheckConstraint(
                condition=(Q(kind="earn") & Q(points__gt=0))
                | (Q(kind__in=["redeem", "expire"]) & Q(points__lt=0))
                | Q(kind="adjust"),
                name="points_transactions_sign_matches_kind",
            ),
        ]
