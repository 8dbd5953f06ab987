"""The `subscriptions` table (and `pricing_configs`, which price it), with each user's points
ledger generated alongside: a subscription's payment earns points and may redeem some.

Costs come from the pricing engine itself (:func:`billing.pricing.compute_breakdown`): a demo
catalogue has a handful of configs, intervals and frequencies, so every breakdown is computed once
and reused, which keeps a million rows fast without a second spelling of the rules.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

from django.db.models import Q

from billing.models import PricingConfig, Subscription
from billing.pricing import compute_breakdown
from loyalty.ledger import points_for_amount
from loyalty.models import PointsTransaction
from seeding.analytics import SubscriptionDays
from seeding.base import (
    DAY,
    REFERENCE,
    SeedRefused,
    array_of,
    copy_safe,
    date,
    money,
    timestamp,
    user_uuid_hex,
)
from seeding.loyalty import WELCOME_BONUS, ledger_row

if TYPE_CHECKING:
    from seeding.run import Seeder

# Baseline prices (no pricing configs exist yet): the migration's default configs, yearly = 12x.
BASELINE_PRICES_CENTS = {"basic": 999, "standard": 1999, "premium": 3999}
PLAN_WEIGHTS = (("basic", 0.50), ("standard", 0.35), ("premium", 0.15))
# (status, cumulative probability)
STATUSES = (("active", 0.70), ("paused", 0.78), ("past_due", 0.85), ("cancelled", 1.0))
STREETS = ("Main St", "Oak Ave", "Elm St", "Park Rd", "Lake Dr", "Hill St", "River Rd", "Cedar Ln")
CITIES = ("Springfield", "Riverton", "Fairview", "Madison", "Georgetown", "Clinton", "Salem", "Franklin")
copy_safe((*STREETS, *CITIES))

# Demo pricing configs created next to the migration's defaults (skipped when an active config of
# the plan and variant already overlaps the window). Windows are half-open: [from, until).
DEMO_PRICING = (
    # plan, variant_id, variant_name, base, delivery, tax, discount, rules, points/unit, from, until
    ("basic", "eco-box", "Eco box", "12.99", "2.99", "0.0800", "0", {}, "1.00", (2024, 6, 1), None),
    ("standard", "family-box", "Family box", "27.99", "4.99", "0.0825", "0", {}, "1.00", (2024, 1, 1), (2025, 1, 1)),
    ("standard", "family-box", "Family box", "29.99", "4.99", "0.0825", "0.0500", {"min_months": 12, "rate": "0.10"},
     "1.00", (2025, 1, 1), None),
    ("premium", "chef-select", "Chef select", "59.99", "0", "0.0825", "0.1000", {"min_months": 12, "rate": "0.05"},
     "2.00", (2024, 1, 1), None),
)  # fmt: skip
DEMO_PRICING_PREFIX = "Demo pricing: "


def _cents(amount: Decimal) -> int:
    return int(amount * 100)  # exact: the pricing engine quantizes to the cent


@dataclass
class Offer:
    """A plan variant subscriptions are sold at: a pricing config, or at the baseline the plan's price."""

    plan: str
    variant_id: str
    variant_name: str
    config_id: str | None
    config: PricingConfig | None = None
    baseline_cents: int = 0
    _costs: dict = field(default_factory=dict, repr=False)
    _points: dict = field(default_factory=dict, repr=False)

    def cost(self, yearly: bool, frequency: str, loyalty_cents: int = 0) -> tuple[int, tuple[str, ...]]:
        """(total in cents, the six amounts base, delivery, tax, discount, loyalty discount, total as
        text), by the pricing engine."""
        key = (yearly, frequency, loyalty_cents)
        cost = self._costs.get(key)
        if cost is None:
            b = compute_breakdown(
                self.config,
                billing_interval="year" if yearly else "month",
                delivery_frequency=frequency,
                loyalty_discount=Decimal(loyalty_cents) / 100,
            )
            amounts = (b.base, b.delivery, b.tax, b.discount, b.loyalty_discount, b.total)
            cost = self._costs[key] = (_cents(b.total), tuple(money(_cents(v)) for v in amounts))
        return cost

    def points(self, paid_cents: int) -> int:
        """Points the payment of `paid_cents` earns, by the ledger's rule."""
        points = self._points.get(paid_cents)
        if points is None:
            points = self._points[paid_cents] = points_for_amount(paid_cents, self.config.loyalty_points_per_unit)
        return points


def baseline_offers(seeder: Seeder) -> list[tuple[str, list[Offer]]]:
    return [
        (plan, [Offer(plan, "default", "Default", seeder.null, baseline_cents=cents)])
        for plan, cents in BASELINE_PRICES_CENTS.items()
    ]


def pricing_offers(seeder: Seeder) -> list[tuple[str, list[Offer]]]:
    """Create the demo pricing configs that fit, then offer every config in effect at REFERENCE."""
    configs = PricingConfig.objects.using(seeder.using)
    created = []
    for plan, variant, variant_name, base, delivery, tax, disc, rules, ppu, start, until in DEMO_PRICING:
        effective_from = datetime.datetime(*start, tzinfo=datetime.UTC)
        effective_until = datetime.datetime(*until, tzinfo=datetime.UTC) if until else None
        clash = configs.filter(plan=plan, variant_id=variant, is_active=True).filter(
            Q(effective_until__isnull=True) | Q(effective_until__gt=effective_from)
        )
        if effective_until is not None:
            clash = clash.filter(effective_from__lt=effective_until)
        if clash.exists():
            continue
        config = configs.create(
            name=f"{DEMO_PRICING_PREFIX}{plan} {variant_name.lower()} from {effective_from:%Y-%m-%d}",
            plan=plan,
            variant_id=variant,
            variant_name=variant_name,
            base_price=Decimal(base),
            delivery_fee=Decimal(delivery),
            tax_rate=Decimal(tax),
            discount_rate=Decimal(disc),
            discount_rules=rules,
            loyalty_points_per_unit=Decimal(ppu),
            effective_from=effective_from,
            effective_until=effective_until,
            is_active=True,
        )
        created.append(config.pk)
    if created:  # auto_now(_add) stamped the clock; demo data is dated from REFERENCE instead
        stamp = datetime.datetime.fromtimestamp(REFERENCE - 400 * DAY, tz=datetime.UTC)
        configs.filter(pk__in=created).update(created_at=stamp, updated_at=stamp)
    seeder.report.counts["pricing_configs"] = len(created)
    now = datetime.datetime.fromtimestamp(REFERENCE, tz=datetime.UTC)
    in_effect = (
        configs.filter(is_active=True, effective_from__lte=now)
        .filter(Q(effective_until__isnull=True) | Q(effective_until__gt=now))
        .order_by("plan", "variant_id", "id")
    )
    by_plan: dict[str, list[Offer]] = {}
    for c in in_effect:
        by_plan.setdefault(c.plan, []).append(Offer(c.plan, c.variant_id, c.variant_name or c.variant_id, str(c.pk), c))
    offers = [(plan, by_plan[plan]) for plan, _ in PLAN_WEIGHTS if plan in by_plan]
    if not offers:
        raise SeedRefused("no active pricing config is in effect: nothing to price subscriptions with")
    return offers


def write_subscriptions(seeder: Seeder, users: int, total: int) -> None:
    """Subscriptions in user order and, at the head, each user's points ledger alongside."""
    rng = seeder.rng
    head = seeder.head
    null = seeder.null
    # the rng's bound methods as locals: the row loop below runs once per subscription
    random_, randrange, choice = rng.random, rng.randrange, rng.choice
    offset = seeder.uuid_offset
    subs_per_user = seeder.subs_per_user
    joined = seeder.joined
    balances, lifetime = seeder.balances, seeder.lifetime
    account_base = seeder.account_base
    plans = seeder.offers
    weights = dict(PLAN_WEIGHTS)
    plan_total = sum(weights[plan] for plan, _ in plans)
    cumulative = []
    running = 0.0
    for plan, offers in plans:
        running += weights[plan] / plan_total
        cumulative.append((running, offers))
    cumulative[-1] = (1.0, cumulative[-1][1])

    sub_id = seeder.next_ids["subscriptions"]
    seeder.first_subscription_id = sub_id
    tx_id = seeder.next_ids["points_transactions"] if head else 0
    # Per subscription, for the payment-intent phase and the analytics.
    seeder.sub_user = array_of("l", total)
    seeder.sub_total = array_of("l", total)
    seeder.sub_started = array_of("q", total)
    transactions: list[tuple] = []
    seeder.transactions_written = 0
    analytics = SubscriptionDays(seeder.days_window) if head else None

    def flush_transactions() -> None:
        seeder.write_rows(PointsTransaction, transactions)
        seeder.transactions_written += len(transactions)
        transactions.clear()

    def rows() -> Iterator[tuple]:
        # values in the model's field order (see seeder.columns)
        nonlocal sub_id, tx_id
        position = 0
        for user in range(users):
            count = subs_per_user[user]
            balance = 0
            earned = 0
            account = str(account_base + user) if head else ""
            when = joined[user]
            if head and random_() < 0.3:
                balance = earned = WELCOME_BONUS
                at = timestamp(when)
                transactions.append(
                    ledger_row(tx_id, account, WELCOME_BONUS, "earn", balance, "welcome bonus", at, null, null)
                )
                tx_id += 1
            if not count and not head:
                continue
            user_id = user_uuid_hex(user, offset)
            for _ in range(count):
                when = min(when + randrange(DAY, 120 * DAY), REFERENCE - randrange(1, 3600))
                r = random_()
                for threshold, offers in cumulative:  # noqa: B007 - the chosen row is used after break
                    if r < threshold:
                        break
                offer = choice(offers)
                r = random_()
                for status, threshold in STATUSES:  # noqa: B007
                    if r < threshold:
                        break
                yearly = random_() < 0.2
                months = 12 if yearly else 1
                cancelled_at = null
                if status == "cancelled":
                    ended = min(when + randrange(DAY, 400 * DAY), REFERENCE - 1)
                    cancelled_at = timestamp(ended)
                started_at = timestamp(when)
                if not head:
                    total_cents = offer.baseline_cents * months
                    row = (str(sub_id), user_id, offer.plan, status, money(total_cents), "USD")
                    row += ("year" if yearly else "month", started_at, cancelled_at, started_at, started_at)
                else:
                    frequency = "weekly" if (f := random_()) < 0.3 else ("biweekly" if f < 0.6 else "monthly")
                    cost = offer.cost(yearly, frequency)
                    if balance >= 100 and random_() < 0.5:
                        loyalty = min(balance, 500, cost[0]) // 100 * 100  # 1 point = 1 cent
                        if loyalty:
                            cost = offer.cost(yearly, frequency, loyalty)
                            balance -= loyalty
                            transactions.append(
                                ledger_row(
                                    tx_id,
                                    account,
                                    -loyalty,
                                    "redeem",
                                    balance,
                                    "redeemed at checkout",
                                    started_at,
                                    str(sub_id),
                                    null,
                                )  # fmt: skip
                            )
                            tx_id += 1
                    total_cents, amounts = cost
                    points = 0 if status == "past_due" else offer.points(total_cents)
                    if points:
                        balance += points
                        earned += points
                        transactions.append(
                            ledger_row(
                                tx_id,
                                account,
                                points,
                                "earn",
                                balance,
                                "subscription payment",
                                started_at,
                                str(sub_id),
                                null,
                            )  # fmt: skip
                        )
                        tx_id += 1
                    next_delivery = null
                    if status == "active":
                        next_delivery = date(REFERENCE + randrange(0, 28) * DAY)
                    line1 = f"{randrange(1, 9999)} {choice(STREETS)}"
                    city = choice(CITIES)
                    address = (
                        f'{{"line1": "{line1}", "city": "{city}", '
                        f'"postal_code": "{randrange(1000, 99999):05d}", "country": "US"}}'
                    )
                    row = (
                        (str(sub_id), user_id, offer.plan, status, amounts[5], "USD", "year" if yearly else "month")
                        + (started_at, cancelled_at, started_at, started_at)
                        + (offer.variant_id, offer.variant_name, offer.config_id)
                        + amounts
                        + (frequency, next_delivery, address, account, str(points))
                    )
                    analytics.add(when, ended if status == "cancelled" else None, status, total_cents * 12 // months)
                seeder.sub_user[position] = user
                seeder.sub_total[position] = total_cents
                seeder.sub_started[position] = when
                position += 1
                sub_id += 1
                yield row
            if head:
                if balance > 0 and random_() < 0.05:
                    expired = -randrange(1, balance + 1)
                    balance += expired
                    at = timestamp(REFERENCE - randrange(1, DAY))
                    transactions.append(
                        ledger_row(tx_id, account, expired, "expire", balance, "points expired", at, null, null)
                    )
                    tx_id += 1
                balances[user] = balance
                lifetime[user] = earned
                if len(transactions) >= seeder.batch_size:
                    flush_transactions()

    seeder.write(Subscription, rows(), total, "subscriptions")
    if head:
        flush_transactions()
        seeder.subscription_days = analytics
