"""Money: one representation everywhere.

Amounts the business reasons about (prices, costs, MRR) are `Decimal` with 12 digits and 2 places,
rounded half-up to the currency's minor unit. Amounts that come from Stripe stay in Stripe's own
integer minor units (`amount`, `amount_received` of a payment intent): converting them would invite
rounding drift between our books and Stripe's.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.db import models

MONEY_MAX_DIGITS = 12
MONEY_DECIMAL_PLACES = 2
RATE_MAX_DIGITS = 5
RATE_DECIMAL_PLACES = 4
CENT = Decimal("0.01")


def MoneyField(**kwargs) -> models.DecimalField:  # noqa: N802 - reads like a field class
    kwargs.setdefault("max_digits", MONEY_MAX_DIGITS)
    kwargs.setdefault("decimal_places", MONEY_DECIMAL_PLACES)
    return models.DecimalField(**kwargs)


def RateField(**kwargs) -> models.DecimalField:  # noqa: N802 - reads like a field class
    """A fraction in [0, 1] with four places (0.0825 = 8.25 %)."""
    kwargs.setdefault("max_digits", RATE_MAX_DIGITS)
    kwargs.setdefault("decimal_places", RATE_DECIMAL_PLACES)
    return models.DecimalField(**kwargs)


def quantize_money(value: Decimal) -> Decimal:
    """Round to the minor unit, half-up (the rounding invoices use)."""
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


def monthly_recurring_revenue(annual_cents: int) -> Decimal:
    """MRR of subscriptions whose yearly totals add up to `annual_cents` (a monthly total counts twelve
    times): divided by 12 once, rounded half-up to the cent, never negative. The one rule of the
    analytics rollup (whose SQL spells it ROUND(annual_cents / 1200.0, 2)), seeding and repricing."""
    return quantize_money(Decimal(max(annual_cents, 0)) / 1200)
