"""The pricing engine: a subscription's cost breakdown from the pricing config active at a moment.

The rules (one place, used by the Python path and mirrored by the set-based SQL below):

- ``months`` = 12 for a yearly subscription, else 1.
- ``base`` = config.base_price x months.
- ``delivery`` = config.delivery_fee x deliveries per month (weekly 4, biweekly 2, monthly 1; no
  frequency counts as monthly) x months.
- ``discount`` = base x min(1, config.discount_rate + the rate of every discount rule that applies),
  rounded half-up to the cent. A rule ``{"min_months": N, "rate": "0.10"}`` (or a list of them)
  applies when the billing term is at least N months.
- ``tax`` = (base + delivery - discount) x config.tax_rate, rounded half-up: tax is on the
  discounted amount.
- ``loyalty_discount`` = the points redeemed against the subscription (kept), at most the subtotal.
- ``total`` = base + delivery + tax - discount - loyalty_discount (the invariant validate_db checks).

Amounts have two places and rates four, so the SQL computes in integer cents and rates x 10^4 with
``(x + 5000) / 10000`` as half-up rounding: exact on both engines, identical to ``quantize_money``.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from decimal import Decimal

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import PricingConfig, Subscription, SubscriptionCostHistory
from common.money import monthly_recurring_revenue, quantize_money
from migrations_ops.dialect import UnsupportedVendor, for_vendor

DELIVERIES_PER_MONTH = {"weekly": 4, "biweekly": 2, "monthly": 1}
LIVE_STATUSES = ("active", "past_due")  # what MRR counts (README, "Analytics")
REPRICED_STATUSES = ("active", "paused", "past_due")  # cancelled subscriptions keep their last price
COMPONENTS = ("base", "delivery", "tax", "discount", "loyalty_discount", "total")
ZERO = Decimal("0.00")


class PricingError(Exception):
    """No pricing config is in effect, or the input cannot be priced."""


@dataclass(frozen=True)
class CostBreakdown:
    base: Decimal
    delivery: Decimal
    tax: Decimal
    discount: Decimal
    loyalty_discount: Decimal
    total: Decimal

    def as_json(self) -> dict[str, str]:
        """The JSON kept in cost history: amounts as strings with two places, never floats."""
        return {name: f"{getattr(self, name):.2f}" for name in COMPONENTS}

    @classmethod
    def of(cls, subscription: Subscription) -> CostBreakdown | None:
        """The breakdown a subscription currently stores (None before it was ever priced)."""
        if subscription.total_cost is None:
            return None
        values = [
            subscription.base_cost,
            subscription.delivery_cost,
            subscription.tax_amount,
            subscription.discount_amount,
            subscription.loyalty_discount,
            subscription.total_cost,
        ]
        return cls(*(quantize_money(v if v is not None else ZERO) for v in values))


def term_months(billing_interval: str) -> int:
    return 12 if billing_interval == Subscription.BillingInterval.YEAR else 1


def discount_rules(config: PricingConfig) -> list[dict]:
    rules = config.discount_rules or []
    return [rules] if isinstance(rules, dict) and rules else list(rules) if isinstance(rules, list) else []


def discount_rate(config: PricingConfig, months: int) -> Decimal:
    """The config's discount rate plus every rule whose minimum term the subscription meets, at most 1."""
    rate = Decimal(config.discount_rate)
    for rule in discount_rules(config):
        if months >= int(rule.get("min_months", 0)):
            rate += Decimal(str(rule.get("rate", "0")))
    return min(rate, Decimal(1))


def compute_breakdown(
    config: PricingConfig,
    *,
    billing_interval: str = Subscription.BillingInterval.MONTH,
    delivery_frequency: str | None = None,
    loyalty_discount: Decimal = ZERO,
) -> CostBreakdown:
    months = term_months(billing_interval)
    deliveries = DELIVERIES_PER_MONTH.get(delivery_frequency or "monthly", 1)
    base = quantize_money(Decimal(config.base_price) * months)
    delivery = quantize_money(Decimal(config.delivery_fee) * deliveries * months)
    discount = quantize_money(base * discount_rate(config, months))
    tax = quantize_money((base + delivery - discount) * Decimal(config.tax_rate))
    subtotal = base + delivery + tax - discount
    loyalty = min(quantize_money(Decimal(loyalty_discount)), subtotal)
    if loyalty < 0:
        raise PricingError("a loyalty discount cannot be negative")
    return CostBreakdown(base, delivery, tax, discount, loyalty, subtotal - loyalty)


def active_config(plan: str, variant_id: str | None, at: datetime.datetime | None = None, *, using=DEFAULT_DB_ALIAS):
    """The active config of the plan and variant whose half-open window contains `at` (default now)."""
    at = at or timezone.now()
    return (
        PricingConfig.objects.using(using)
        .filter(plan=plan, variant_id=variant_id or "default", is_active=True, effective_from__lte=at)
        .filter(Q(effective_until__isnull=True) | Q(effective_until__gt=at))
        .order_by("-effective_from", "-id")
        .first()
    )


def quote(subscription: Subscription, at: datetime.datetime | None = None, *, using=DEFAULT_DB_ALIAS):
    """(config, breakdown) for a subscription at a moment, without writing anything."""
    config = active_config(subscription.plan, subscription.variant_id, at, using=using)
    if config is None:
        raise PricingError(f"no active pricing config for {subscription.plan}/{subscription.variant_id or 'default'}")
    current = subscription.loyalty_discount if subscription.loyalty_discount is not None else ZERO
    breakdown = compute_breakdown(
        config,
        billing_interval=subscription.billing_interval,
        delivery_frequency=subscription.delivery_frequency,
        loyalty_discount=current,
    )
    return config, breakdown


def apply_pricing(
    subscription: Subscription,
    *,
    at: datetime.datetime | None = None,
    reason: str = SubscriptionCostHistory.Reason.PRICING_CHANGE,
    changed_by=None,
    loyalty_discount: Decimal | None = None,
    using=DEFAULT_DB_ALIAS,
) -> SubscriptionCostHistory | None:
    """Re-price one subscription; when its cost changes, store it and a history row in one transaction.

    Returns the history row, or None when the cost did not change (nothing is written then).
    """
    with transaction.atomic(using=using):
        locked = Subscription.objects.using(using).select_for_update().get(pk=subscription.pk)
        if loyalty_discount is not None:
            locked.loyalty_discount = loyalty_discount
        config, new = quote(locked, at, using=using)
        old = CostBreakdown.of(Subscription.objects.using(using).get(pk=subscription.pk))
        if new == old and locked.pricing_config_id == config.pk:
            return None
        locked.pricing_config = config
        locked.base_cost, locked.delivery_cost, locked.tax_amount = new.base, new.delivery, new.tax
        locked.discount_amount, locked.loyalty_discount, locked.total_cost = (
            new.discount,
            new.loyalty_discount,
            new.total,
        )
        locked.price = new.total
        locked.save(using=using)
        for field in ("pricing_config", "base_cost", "delivery_cost", "tax_amount", "discount_amount"):
            setattr(subscription, field, getattr(locked, field))
        subscription.loyalty_discount, subscription.total_cost, subscription.price = (
            new.loyalty_discount,
            new.total,
            new.total,
        )
        if new == old:  # only the config link changed: the cost did not, so no history row
            return None
        return SubscriptionCostHistory.objects.using(using).create(
            subscription=locked,
            old_breakdown=old.as_json() if old else None,
            new_breakdown=new.as_json(),
            old_total=old.total if old else None,
            new_total=new.total,
            reason=reason,
            pricing_config=config,
            changed_by=changed_by,
        )


# --------------------------------------------------------------------------------------------
# Set-based repricing and impact preview
# --------------------------------------------------------------------------------------------


class Dialect:
    """The few SQL spellings that differ between engines (everything else is shared SQL)."""

    def json_breakdown(self, prefix: str) -> str:
        pairs = ", ".join(f"'{name}', {self.money_text(f'{prefix}{name}')}" for name in COMPONENTS)
        return f"{self.json_function}({pairs})"

    json_function = ""

    def money_text(self, cents: str) -> str:
        raise NotImplementedError


class PostgresDialect(Dialect):
    json_function = "json_build_object"

    def money_text(self, cents: str) -> str:
        return f"(({cents})::numeric / 100)::numeric(14, 2)::text"


class SQLiteDialect(Dialect):
    json_function = "json_object"

    def money_text(self, cents: str) -> str:
        return f"printf('%d.%02d', ({cents}) / 100, ({cents}) % 100)"


DIALECTS = {"postgresql": PostgresDialect(), "sqlite": SQLiteDialect()}


def dialect_for(connection) -> Dialect:
    try:
        return for_vendor(DIALECTS, connection, feature="set-based pricing")
    except UnsupportedVendor as exc:  # callers of the pricing engine handle PricingError
        raise PricingError(str(exc)) from None


def _cents(expr: str) -> str:
    return f"CAST(ROUND(({expr}) * 100) AS BIGINT)"


def _bp(expr: str) -> str:
    return f"CAST(ROUND(({expr}) * 10000) AS BIGINT)"


def _half_up(numerator: str) -> str:
    return f"(({numerator}) + 5000) / 10000"


def _rules_case(configs: list[PricingConfig], *, config: str, months: str) -> str:
    """SQL: the discount rate x 10^4 of config `config` for a term of `months` (rate + rules, at most 1).

    Rules live in JSON; there are few configs, so they are read in Python and inlined as a CASE.
    """
    whens = []
    for cfg in configs:
        rules = discount_rules(cfg)
        for term in (1, 12):
            extra = sum((Decimal(str(r.get("rate", "0"))) for r in rules if term >= int(r.get("min_months", 0))), ZERO)
            if extra:
                whens.append(f"WHEN {config}.id = {int(cfg.pk)} AND {months} = {term} THEN {int(extra * 10000)}")
    extra_sql = f"(CASE {' '.join(whens)} ELSE 0 END)" if whens else "0"
    total = f"({_bp(f'{config}.discount_rate')} + {extra_sql})"
    return f"(CASE WHEN {total} > 10000 THEN 10000 ELSE {total} END)"


@dataclass
class RepriceResult:
    candidates: int  # non-cancelled subscriptions of the plan/variant that have a config in effect
    changed: int  # subscriptions whose cost or config link changed
    history_rows: int  # cost-history rows written (the cost changed)
    mrr_before: Decimal  # MRR of the candidates before
    mrr_after: Decimal  # and after
    dry_run: bool

    @property
    def mrr_change(self) -> Decimal:
        return self.mrr_after - self.mrr_before

    def to_dict(self) -> dict:
        return {**asdict(self), "mrr_change": self.mrr_change}


def _mrr(monthly_cents: int, yearly_cents: int) -> Decimal:
    return monthly_recurring_revenue(monthly_cents * 12 + yearly_cents)


NEW_TABLE = "reprice_new"
COST_COLUMNS = ("base", "delivery", "tax", "discount", "loyalty_discount", "total")


def _build_new_table(cursor, *, where: str, params: list, config_cte: str, config_params: list, configs) -> None:
    """CREATE TEMPORARY TABLE reprice_new: per candidate subscription, old and new cost in integer cents.

    A missing old component reads as -1 cent, so "changed" is a plain comparison on both engines.
    """
    cursor.execute(f"DROP TABLE IF EXISTS {NEW_TABLE}")
    sql = f"""
    CREATE TEMPORARY TABLE {NEW_TABLE} AS
    WITH cfg AS ({config_cte}),
    m AS (
        SELECT s.id, s.status, s.billing_interval, s.pricing_config_id AS old_config_id, c.id AS config_id,
               CASE WHEN s.billing_interval = 'year' THEN 12 ELSE 1 END AS months,
               CASE s.delivery_frequency WHEN 'weekly' THEN 4 WHEN 'biweekly' THEN 2 ELSE 1 END AS deliveries,
               {_cents("c.base_price")} AS base_price_c, {_cents("c.delivery_fee")} AS delivery_fee_c,
               {_bp("c.tax_rate")} AS tax_bp,
               {_rules_case(configs, config="c", months="CASE WHEN s.billing_interval = 'year' THEN 12 ELSE 1 END")}
                   AS discount_bp,
               {_cents("COALESCE(s.base_cost, -0.01)")} AS old_base,
               {_cents("COALESCE(s.delivery_cost, -0.01)")} AS old_delivery,
               {_cents("COALESCE(s.tax_amount, -0.01)")} AS old_tax,
               {_cents("COALESCE(s.discount_amount, -0.01)")} AS old_discount,
               {_cents("COALESCE(s.loyalty_discount, -0.01)")} AS old_loyalty_discount,
               {_cents("COALESCE(s.total_cost, -0.01)")} AS old_total,
               {_cents("COALESCE(s.total_cost, s.price)")} AS old_effective_total
        FROM subscriptions s
        JOIN cfg ON cfg.plan = s.plan AND cfg.variant_id = COALESCE(s.variant_id, 'default')
        JOIN pricing_configs c ON c.id = cfg.id
        WHERE {where}
    ),
    d AS (
        SELECT m.*, m.base_price_c * m.months AS new_base, m.delivery_fee_c * m.deliveries * m.months AS new_delivery,
               {_half_up("m.base_price_c * m.months * m.discount_bp")} AS new_discount
        FROM m
    ),
    t AS (SELECT d.*, {_half_up("(d.new_base + d.new_delivery - d.new_discount) * d.tax_bp")} AS new_tax FROM d),
    st AS (
        SELECT t.*, t.new_base + t.new_delivery + t.new_tax - t.new_discount AS new_subtotal,
               CASE WHEN t.old_loyalty_discount < 0 THEN 0 ELSE t.old_loyalty_discount END AS kept_loyalty
        FROM t
    ),
    l AS (
        SELECT st.*, CASE WHEN st.kept_loyalty < st.new_subtotal THEN st.kept_loyalty ELSE st.new_subtotal END
                     AS new_loyalty_discount
        FROM st
    )
    SELECT l.id, l.status, l.billing_interval, l.config_id, l.old_config_id,
           l.old_base, l.old_delivery, l.old_tax, l.old_discount, l.old_loyalty_discount, l.old_total,
           l.old_effective_total, l.new_base, l.new_delivery, l.new_tax, l.new_discount, l.new_loyalty_discount,
           l.new_subtotal - l.new_loyalty_discount AS new_total
    FROM l
    """
    cursor.execute(sql, [*config_params, *params])


def _cost_changed(prefix: str = "") -> str:
    return "(" + " OR ".join(f"{prefix}new_{c} <> {prefix}old_{c}" for c in COST_COLUMNS) + ")"


def _row_changed(prefix: str = "") -> str:
    return f"({_cost_changed(prefix)} OR {prefix}config_id <> COALESCE({prefix}old_config_id, -1))"


def _filters(plan: str | None, variant: str | None) -> tuple[str, list]:
    where = [f"s.status IN ({', '.join(repr(s) for s in REPRICED_STATUSES)})"]
    params: list = []
    if plan:
        where.append("s.plan = %s")
        params.append(plan)
    if variant:
        where.append("COALESCE(s.variant_id, 'default') = %s")
        params.append(variant)
    return " AND ".join(where), params


def _live_configs_cte(connection, at: datetime.datetime) -> tuple[str, list]:
    """The one config in effect per plan and variant at `at` (the latest start wins should two overlap)."""
    stamp = connection.ops.adapt_datetimefield_value(at)
    sql = """
        SELECT id, plan, variant_id FROM (
            SELECT id, plan, variant_id,
                   ROW_NUMBER() OVER (PARTITION BY plan, variant_id ORDER BY effective_from DESC, id DESC) AS rn
            FROM pricing_configs
            WHERE is_active AND effective_from <= %s AND (effective_until IS NULL OR effective_until > %s)
        ) ranked WHERE rn = 1
    """
    return sql, [stamp, stamp]


def _summarise(cursor) -> tuple[int, int, int, int, int, int, int, int]:
    """candidates, changed rows, cost-changed rows, live rows, and the monthly/yearly sums (cents) of
    the live totals before and after."""
    live = f"status IN ({', '.join(repr(s) for s in LIVE_STATUSES)})"
    cursor.execute(
        f"""
        SELECT COUNT(*),
               COALESCE(SUM(CASE WHEN {_row_changed()} THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN {_cost_changed()} THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN {live} THEN 1 ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN {live} AND billing_interval <> 'year' THEN old_effective_total ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN {live} AND billing_interval = 'year' THEN old_effective_total ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN {live} AND billing_interval <> 'year' THEN new_total ELSE 0 END), 0),
               COALESCE(SUM(CASE WHEN {live} AND billing_interval = 'year' THEN new_total ELSE 0 END), 0)
        FROM {NEW_TABLE}
        """
    )
    return tuple(int(v) for v in cursor.fetchone())


def reprice(
    *,
    plan: str | None = None,
    variant: str | None = None,
    at: datetime.datetime | None = None,
    dry_run: bool = False,
    changed_by_id=None,
    using: str = DEFAULT_DB_ALIAS,
) -> RepriceResult:
    """Re-price every non-cancelled subscription (of a plan / variant) from the config in effect `at`.

    Set-based, in one transaction: one statement computes the new breakdowns into a temporary table,
    one INSERT ... SELECT writes the cost-history rows (where the cost changed), one UPDATE ... FROM
    stores the new costs and config links. `--dry-run` computes and reports, and writes nothing.
    """
    at = at or timezone.now()
    connection = connections[using]
    dialect = dialect_for(connection)
    configs = list(PricingConfig.objects.using(using).exclude(discount_rules={}))
    where, params = _filters(plan, variant)
    config_cte, config_params = _live_configs_cte(connection, at)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        _build_new_table(
            cursor, where=where, params=params, config_cte=config_cte, config_params=config_params, configs=configs
        )
        candidates, changed, cost_changed, _, old_m, old_y, new_m, new_y = _summarise(cursor)
        history = 0
        if not dry_run and changed:
            cursor.execute(
                f"""
                INSERT INTO subscription_cost_history
                    (subscription_id, old_breakdown, new_breakdown, old_total, new_total, reason,
                     pricing_config_id, changed_by_id, changed_at)
                SELECT id,
                       CASE WHEN old_total < 0 THEN NULL ELSE {dialect.json_breakdown("old_")} END,
                       {dialect.json_breakdown("new_")},
                       CASE WHEN old_total < 0 THEN NULL ELSE old_total / 100.0 END,
                       new_total / 100.0, %s, config_id, %s, %s
                FROM {NEW_TABLE} WHERE {_cost_changed()}
                """,
                [
                    SubscriptionCostHistory.Reason.PRICING_CHANGE,
                    changed_by_id,
                    connection.ops.adapt_datetimefield_value(at),
                ],
            )
            history = cursor.rowcount
            cursor.execute(
                f"""
                UPDATE subscriptions SET
                    base_cost = n.new_base / 100.0, delivery_cost = n.new_delivery / 100.0,
                    tax_amount = n.new_tax / 100.0, discount_amount = n.new_discount / 100.0,
                    loyalty_discount = n.new_loyalty_discount / 100.0, total_cost = n.new_total / 100.0,
                    price = n.new_total / 100.0, pricing_config_id = n.config_id, updated_at = %s
                FROM {NEW_TABLE} n
                WHERE subscriptions.id = n.id AND {_row_changed("n.")}
                """,
                [connection.ops.adapt_datetimefield_value(timezone.now())],
            )
        cursor.execute(f"DROP TABLE {NEW_TABLE}")
    return RepriceResult(
        candidates=candidates,
        changed=changed,
        history_rows=history if not dry_run else cost_changed,
        mrr_before=_mrr(old_m, old_y),
        mrr_after=_mrr(new_m, new_y),
        dry_run=dry_run,
    )


@dataclass
class Preview:
    config: PricingConfig
    subscriptions: int  # non-cancelled subscriptions of the config's plan and variant
    live_subscriptions: int  # of which count towards MRR (active, past_due)
    changed: int  # whose cost would change
    mrr_before: Decimal
    mrr_after: Decimal

    @property
    def mrr_change(self) -> Decimal:
        return self.mrr_after - self.mrr_before


def preview_config(config: PricingConfig, *, using: str = DEFAULT_DB_ALIAS) -> Preview:
    """What applying `config` to its plan and variant's subscriptions now would do; writes nothing."""
    connection = connections[using]
    where, params = _filters(config.plan, config.variant_id)
    cte = "SELECT id, plan, variant_id FROM pricing_configs WHERE id = %s"
    with transaction.atomic(using=using), connection.cursor() as cursor:
        _build_new_table(
            cursor, where=where, params=params, config_cte=cte, config_params=[config.pk], configs=[config]
        )
        candidates, _, cost_changed, live, old_m, old_y, new_m, new_y = _summarise(cursor)
        cursor.execute(f"DROP TABLE {NEW_TABLE}")
    return Preview(config, candidates, live, cost_changed, _mrr(old_m, old_y), _mrr(new_m, new_y))
