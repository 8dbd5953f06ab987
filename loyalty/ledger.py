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

import logging
from decimal import Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import Sum

from common.currency import to_major
from loyalty.models import LoyaltyAccount, PointsTransaction, Tier

log = logging.getLogger(__name__)


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


def points_for_amount(amount_minor: int, points_per_unit: Decimal, currency: str = "usd") -> int:
    """Points for a payment: currency units x points per unit, rounded down (no partial points).

    Units follow Stripe's minor units per currency: JPY 1000 is 1000 yen, KWD 1000 is 1.000 dinar.
    """
    return int(to_major(amount_minor, currency) * Decimal(points_per_unit) // 1)


def _post(
    account_id: int,
    points: int,
    kind: str,
    *,
    using: str,
    lifetime: bool = False,
    **details,
) -> PointsTransaction:
    """Move the balance by `points` and record it; `details` are the transaction's own columns
    (description, subscription_id, payment_intent_id), passed through to the row as they are."""
    with transaction.atomic(using=using):
        account = LoyaltyAccount.objects.using(using).select_for_update().get(pk=account_id)
        balance = account.points_balance + points
        if balance < 0:
            raise InsufficientPoints(f"account {account_id} has {account.points_balance} points, not {-points}")
        account.points_balance = balance
        fields = ["points_balance", "updated_at"]
        if kind == PointsTransaction.Kind.EARN or lifetime:
            account.lifetime_points = max(0, account.lifetime_points + points)
            account.tier = tier_for(account.lifetime_points)
            fields += ["lifetime_points", "tier"]
        account.save(using=using, update_fields=fields)
        return PointsTransaction.objects.using(using).create(
            account=account, points=points, kind=kind, balance_after=balance, **details
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
    points = points_for_amount(payment_intent.amount_received, points_per_unit, payment_intent.currency)
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


def take_back_for_payment(payment_intent, *, using: str = DEFAULT_DB_ALIAS) -> PointsTransaction | None:
    """Take back what a payment earned beyond what its kept amount deserves, once.

    Kept = amount_received - amount_refunded - amount_disputed_lost (cumulative figures, so a repeated
    or reordered refund event takes nothing twice); the points kept are the earned points in
    proportion, rounded down. One `adjust` transaction (negative, lowering lifetime points and tier
    too) per call that has something to take. Never below zero: points already spent cannot be taken
    back, and the shortfall is logged.
    """
    received = payment_intent.amount_received
    if received <= 0:
        return None
    lost = min(received, payment_intent.amount_refunded + payment_intent.amount_disputed_lost)
    account = account_for(payment_intent.user_id, using=using)
    with transaction.atomic(using=using):
        account = LoyaltyAccount.objects.using(using).select_for_update().get(pk=account.pk)
        entries = PointsTransaction.objects.using(using).filter(payment_intent_id=payment_intent.pk)
        earned = entries.filter(kind=PointsTransaction.Kind.EARN).aggregate(n=Sum("points"))["n"] or 0
        taken = -(entries.filter(kind=PointsTransaction.Kind.ADJUST).aggregate(n=Sum("points"))["n"] or 0)
        kept = earned * (received - lost) // received
        due = earned - kept - taken
        if due <= 0:
            return None
        if due > account.points_balance:
            log.warning(
                "payment %s: %s points to take back, only %s left on account %s",
                payment_intent.stripe_payment_intent_id,
                due,
                account.points_balance,
                account.pk,
            )
            due = account.points_balance
        if due == 0:
            return None
        return _post(
            account.pk,
            -due,
            PointsTransaction.Kind.ADJUST,
            using=using,
            lifetime=True,
            description=f"refund/dispute of payment {payment_intent.stripe_payment_intent_id}",
            subscription_id=payment_intent.subscription_id,
            payment_intent_id=payment_intent.pk,
        )
