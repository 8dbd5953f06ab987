"""Points for payments, as billing announces them (common.signals): connected in LoyaltyConfig.ready.

loyalty does not import billing, nor billing loyalty: the webhook sends the signal in the event's
transaction, these receivers move the points through the ledger and return how many, and billing
adds them to the subscription's `points_earned`.
"""

from __future__ import annotations

from decimal import Decimal

from common import signals
from loyalty import ledger


def earn_for_payment(sender, *, intent, points_per_unit: Decimal, using: str, **kwargs) -> int | None:
    """payment_succeeded: the points the payment earns, once per intent (None: already earned, or none)."""
    entry = ledger.earn_for_payment(intent, points_per_unit, using=using)
    return entry.points if entry is not None else None


def take_back_for_payment(sender, *, intent, using: str, **kwargs) -> int | None:
    """payment_reduced: the points taken back for what the payment lost (negative), or None."""
    entry = ledger.take_back_for_payment(intent, using=using)
    return entry.points if entry is not None else None


def connect() -> None:
    signals.payment_succeeded.connect(earn_for_payment, dispatch_uid="loyalty.earn_for_payment")
    signals.payment_reduced.connect(take_back_for_payment, dispatch_uid="loyalty.take_back_for_payment")
