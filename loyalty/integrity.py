"""Loyalty ledger invariants, registered with validate_db's check registry (from LoyaltyConfig.ready)."""

from __future__ import annotations

from migrations_ops.checks import DOMAIN, offending, register

BALANCE_SQL = """
SELECT a.id, a.points_balance, COALESCE(t.total, 0)
FROM loyalty_accounts a
LEFT JOIN (SELECT account_id, SUM(points) AS total FROM points_transactions GROUP BY account_id) t
       ON t.account_id = a.id
WHERE a.points_balance <> COALESCE(t.total, 0)
"""

# Each transaction's balance_after is the running sum of its account's points, in id order.
CHAIN_SQL = """
SELECT id, account_id, balance_after, running
FROM (SELECT id, account_id, balance_after,
             SUM(points) OVER (PARTITION BY account_id ORDER BY id ROWS UNBOUNDED PRECEDING) AS running
      FROM points_transactions) ledger
WHERE balance_after <> running
"""


@register("loyalty.balance_matches_transactions", tags=(DOMAIN,), requires=["loyalty_accounts", "points_transactions"])
def balance_matches_transactions(connection):
    """Each loyalty account's points_balance equals the sum of its transactions' points."""
    return offending(connection, BALANCE_SQL, columns=["account_id", "points_balance", "sum_of_points"])


@register("loyalty.balance_after_chain", tags=(DOMAIN,), requires=["points_transactions"])
def balance_after_chain(connection):
    """Each transaction's balance_after equals the running sum of its account's points (id order)."""
    return offending(connection, CHAIN_SQL, columns=["id", "account_id", "balance_after", "running_sum"])
