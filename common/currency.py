"""Stripe's minor units: how many decimals an amount of each currency has.

Stripe sends amounts as integers in the currency's smallest unit and currency codes in lower case.
Most currencies have two decimals; the lists below are Stripe's documented exceptions (Stripe docs,
"Currencies": "Zero-decimal currencies" and "Three-decimal currencies"). Stripe requires
three-decimal amounts to be multiples of 10, but they are still counted in thousandths.
"""

from __future__ import annotations

from decimal import Decimal

ZERO_DECIMAL_CURRENCIES = frozenset(
    {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
)
THREE_DECIMAL_CURRENCIES = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def decimals(currency: str) -> int:
    """Digits after the decimal point of `currency`'s minor unit (0, 2 or 3)."""
    code = currency.lower()
    if code in ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def to_major(amount_minor: int, currency: str) -> Decimal:
    """An amount in Stripe's minor units as a Decimal in whole units (JPY 1000 -> 1000, KWD 1000 -> 1.000)."""
    return Decimal(amount_minor).scaleb(-decimals(currency))
