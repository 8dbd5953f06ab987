"""Billing invariants, registered with validate_db's check registry (loaded from BillingConfig.ready)."""

from __future__ import annotations

from migrations_ops.checks import DOMAIN, offending, register

# Money is compared to the cent: SQLite keeps decimals as floating point.
COST_SQL = """
SELECT id, total_cost, base_cost, delivery_cost, tax_amount, discount_amount, loyalty_discount
FROM subscriptions
WHERE total_cost IS NOT NULL
  AND ABS(total_cost - (COALESCE(base_cost, 0) + COALESCE(delivery_cost, 0) + COALESCE(tax_amount, 0)
                        - COALESCE(discount_amount, 0) - COALESCE(loyalty_discount, 0))) >= 0.005
"""

# Half-open windows [from, until); a NULL until is open-ended.
OVERLAP_SQL = """
SELECT a.id, b.id, a.plan, a.variant_id
FROM pricing_configs a
JOIN pricing_configs b ON b.plan = a.plan AND b.variant_id = a.variant_id AND b.id > a.id
WHERE a.is_active AND b.is_active
  AND (b.effective_until IS NULL OR a.effective_from < b.effective_until)
  AND (a.effective_until IS NULL OR b.effective_from < a.effective_until)
"""

COST_COLUMNS = ["total_cost", "base_cost", "delivery_cost", "tax_amount", "discount_amount", "loyalty_discount"]


@register("billing.subscription_total_cost", tags=(DOMAIN,), requires={"subscriptions": COST_COLUMNS})
def subscription_total_cost(connection):
    """total_cost = base + delivery + tax - discount - loyalty_discount, wherever total_cost is set."""
    return offending(connection, COST_SQL, columns=["id", *COST_COLUMNS])


@register("billing.pricing_configs_no_overlap", tags=(DOMAIN,), requires=["pricing_configs"])
def pricing_configs_no_overlap(connection):
    """No two active pricing configs of one plan and variant overlap in time."""
    return offending(connection, OVERLAP_SQL, columns=["id", "overlaps_id", "plan", "variant_id"])
