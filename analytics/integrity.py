"""Analytics invariants, registered with validate_db's check registry (from AnalyticsConfig.ready)."""

from __future__ import annotations

from migrations_ops.checks import DOMAIN, offending, register

DAILY_TABLES = ("subscription_analytics", "payment_analytics")


def _register_unique_per_day(table: str) -> None:
    sql = f"SELECT date, COUNT(*) FROM {table} GROUP BY date HAVING COUNT(*) > 1"

    @register(f"analytics.{table}_unique_per_day", tags=(DOMAIN,), requires=[table])
    def unique_per_day(connection):
        """One row per day."""
        return offending(connection, sql, columns=["date", "rows"])


for _table in DAILY_TABLES:
    _register_unique_per_day(_table)
