"""The loyalty points ledger: earn, redeem, expire.

Every movement is one `PointsTransaction` whose `balance_after` is the account's balance right after
it, written in the same transaction that updates the account, while the account row is locked
(`SELECT ... FOR UPDATE`). Concurrent movements on one account therefore serialise: none is lost,
and transaction ids grow in the order the balance changed (the chain validate_db checks).

Accounts are created on first use (`account_for`, a get_or_create on the unique user) rather than by
a `post_save` signal on User: users are also created in bulk (COPY in seed_demo_data, data
migrations) where signals never fire, on databases still at the baseline schema where the loyalty
tables do not exist yet, and by code that creates the account itself. First use is the one path
every movement takes, and the unique user_id makes concurrent first uses safe.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction

from loyalty.models import LoyaltyAccount, PointsTransaction, Tier


class LedgerError(Exception):
    pass


class InsufficientPoints(LedgerError):
    """A redemption larger than the balance: refused, nothing written."""


def tier_for(lifetime_points: int) -> str:
    """The highest tier whose threshold (settings.LOYALTY_TIER_THRESHOLDS) the lifetime points reach."""
    reached = Tier.BRONZE
    for tier, threshold in sorted(settings.LOYALTY_TIER_THRESHOLDS.items(), key=lambda item: item[1]):
        if lifetime_points >= threshold:
            reached = tier
    return reached


def account_for(user, *, using: str = DEFAULT_DB_ALIAS) -> LoyaltyAccount:
    account, _ = LoyaltyAccount.objects.using(using).get_or_create(user_id=getattr(user, "pk", user))
    return account


def points_for_amount(amount_minor: int, points_per_unit: Decimal) -> int:
    """Points for a payment: whole currency units x points per unit, rounded down (no partial points)."""
    return int(Decimal(amount_minor) * Decimal(points_per_unit) // 100)


def _post(
    account_id: int,
    points: int,
    kind: str,
    *,
    using: str,
    description: str = "",
    subscription_id=None,
    payment_intent_id=None,
) -> PointsTransaction:
    with transaction.atomic(using=using):
        account = LoyaltyAccount.objects.using(using).select_for_update().get(pk=account_id)
        balance = account.points_balance + points
        if balance < 0:
            raise InsufficientPoints(f"account {account_id} has {account.points_balance} points, not {-points}")
        account.points_balance = balance
        fields = ["points_balance", "updated_at"]
        if kind == PointsTransaction.Kind.EARN:
            account.lifetime_points += points
            account.tier = tier_for(account.lifetime_points)
            fields += ["lifetime_points", "tier"]
        account.save(using=using, update_fields=fields)
        return PointsTransaction.objects.using(using).create(
            account=account,
            points=points,
            kind=kind,
            balance_after=balance,
            description=description,
            subscription_id=subscription_id,
            payment_intent_id=payment_intent_id,
        )


def earn(account: LoyaltyAccount, points: int, *, using: str = DEFAULT_DB_ALIAS, **details) -> PointsTransaction:
    if points <= 0:
        raise LedgerError("earned points must be positive")
    return _post(account.pk, points, PointsTransaction.Kind.EARN, using=using, **details)


def redeem(account: LoyaltyAccount, points: int, *, using: str = DEFAULT_DB_ALIAS, **details) -> PointsTransaction:
    """Spend points; never below zero (InsufficientPoints, nothing written)."""
    if points <= 0:
        raise LedgerError("redeemed points must be positive")
    return _post(account.pk, -points, PointsTransaction.Kind.REDEEM, using=using, **details)


def expire(
    account: LoyaltyAccount, points: int, *, using: str = DEFAULT_DB_ALIAS, **details
) -> PointsTransaction | None:
    """Expire up to `points` (never more than the balance); None when there is nothing to expire."""
    if points <= 0:
        raise LedgerError("expired points must be positive")
    with transaction.atomic(using=using):
        balance = LoyaltyAccount.objects.using(using).select_for_update().get(pk=account.pk).points_balance
        amount = min(points, balance)
        if amount == 0:
            return None
        details.setdefault("description", "points expired")
        return _post(account.pk, -amount, PointsTransaction.Kind.EXPIRE, using=using, **details)


def earn_for_payment(payment_intent, points_per_unit: Decimal, *, using: str = DEFAULT_DB_ALIAS):
    """Earn the points of a succeeded payment, once: a second call for the same intent writes nothing.

    Returns the transaction, or None (already earned, or nothing to earn).
    """
    points = points_for_amount(payment_intent.amount_received, points_per_unit)
    if points <= 0:
        return None
    account = account_for(payment_intent.user_id, using=using)
    with transaction.atomic(using=using):
        LoyaltyAccount.objects.using(using).select_for_update().filter(pk=account.pk).first()
        already = PointsTransaction.objects.using(using).filter(
            payment_intent_id=payment_intent.pk, kind=PointsTransaction.Kind.EARN
        )
        if already.exists():
            return None
        entry = earn(
            account,
            points,
            using=using,
            description=f"payment {payment_intent.stripe_payment_intent_id}",
            subscription_id=payment_intent.subscription_id,
            payment_intent_id=payment_intent.pk,
        )
        return entry
