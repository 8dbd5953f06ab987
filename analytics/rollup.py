"""Daily analytics rollup: `subscription_analytics` and `payment_analytics`, one row per UTC day.

Set-based: one INSERT ... SELECT ... ON CONFLICT (date) DO UPDATE per table for all requested days
(the days are a VALUES list of [start, end) bounds), so re-running a day replaces its row (idempotent).
The SQL is the same on PostgreSQL and SQLite (>= 3.24 for the upsert).

Definitions (README, "Analytics"); a day D is the half-open UTC interval [D 00:00, D+1 00:00):
- live at a moment t: started_at < t, not paused (status <> 'paused'), and not cancelled by t
  (cancelled_at IS NULL or cancelled_at >= t). Active and past-due subscriptions are live: a past-due
  subscription is still billed and expected to pay. Only the current status is stored, so a paused
  subscription counts as paused since it started.
- active_subscriptions: live at the end of D. paused_subscriptions: paused and started before the end of D.
- new_subscriptions: started during D. cancelled_subscriptions: cancelled_at during D.
- mrr: the sum over subscriptions live at the end of D of the monthly-normalised total
  (total_cost, or price when never priced; yearly / 12), rounded half-up to the cent.
- churn_rate: cancelled during D / live at the start of D (0 when none was live), at most 1.
- payments are attributed to the day they were created. total_payments: all intents; succeeded:
  status succeeded; failed: canceled, or carrying a failure code (a declined attempt);
  success_rate: succeeded / (succeeded + failed), 0 when neither; intents still in flight count in
  total and volume only. volume_minor: sum of amount; succeeded_volume_minor: sum of amount_received
  of succeeded intents.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

MAX_DAYS = 3660


class RollupError(Exception):
    pass


@dataclass
class RollupResult:
    days: int
    first: datetime.date | None
    last: datetime.date | None


def _days_values(connection, days: list[datetime.date]) -> tuple[str, list]:
    rows, params = [], []
    ops = connection.ops
    for day in days:
        start = datetime.datetime.combine(day, datetime.time(), tzinfo=datetime.UTC)
        rows.append("(%s, %s, %s)")
        params += [
            ops.adapt_datefield_value(day),
            ops.adapt_datetimefield_value(start),
            ops.adapt_datetimefield_value(start + datetime.timedelta(days=1)),
        ]
    return "VALUES " + ", ".join(rows), params


MONTHLY_CENTS = (
    "CASE WHEN s.billing_interval = 'year' THEN 0 ELSE CAST(ROUND(COALESCE(s.total_cost, s.price) * 100) AS BIGINT) END"
)
YEARLY_CENTS = (
    "CASE WHEN s.billing_interval = 'year' THEN CAST(ROUND(COALESCE(s.total_cost, s.price) * 100) AS BIGINT) ELSE 0 END"
)


def _subscription_sql(values: str) -> str:
    live_end = (
        "s.status <> 'paused' AND s.started_at < d.day_end AND (s.cancelled_at IS NULL OR s.cancelled_at >= d.day_end)"
    )
    live_start = (
        "s.status <> 'paused' AND s.started_at < d.day_start "
        "AND (s.cancelled_at IS NULL OR s.cancelled_at >= d.day_start)"
    )
    return f"""
    WITH d (day, day_start, day_end) AS ({values})
    INSERT INTO subscription_analytics
        (date, active_subscriptions, new_subscriptions, cancelled_subscriptions, paused_subscriptions,
         mrr, churn_rate, computed_at)
    SELECT day, active, new, cancelled, paused,
           ROUND((monthly_cents * 12 + yearly_cents) / 1200.0, 2),
           CASE WHEN live_at_start = 0 THEN 0
                WHEN cancelled >= live_at_start THEN 1
                ELSE ROUND(cancelled * 1.0 / live_at_start, 6) END,
           %s
    FROM (
        SELECT d.day,
               SUM(CASE WHEN {live_end} THEN 1 ELSE 0 END) AS active,
               SUM(CASE WHEN s.started_at >= d.day_start AND s.started_at < d.day_end THEN 1 ELSE 0 END) AS new,
               SUM(CASE WHEN s.cancelled_at >= d.day_start AND s.cancelled_at < d.day_end THEN 1 ELSE 0 END)
                   AS cancelled,
               SUM(CASE WHEN s.status = 'paused' AND s.started_at < d.day_end THEN 1 ELSE 0 END) AS paused,
               SUM(CASE WHEN {live_start} THEN 1 ELSE 0 END) AS live_at_start,
               COALESCE(SUM(CASE WHEN {live_end} THEN {MONTHLY_CENTS} ELSE 0 END), 0) AS monthly_cents,
               COALESCE(SUM(CASE WHEN {live_end} THEN {YEARLY_CENTS} ELSE 0 END), 0) AS yearly_cents
        FROM d
        LEFT JOIN subscriptions s ON s.started_at < d.day_end
        GROUP BY d.day
    ) per_day
    WHERE true
    ON CONFLICT (date) DO UPDATE SET
        active_subscriptions = excluded.active_subscriptions, new_subscriptions = excluded.new_subscriptions,
        cancelled_subscriptions = excluded.cancelled_subscriptions,
        paused_subscriptions = excluded.paused_subscriptions, mrr = excluded.mrr,
        churn_rate = excluded.churn_rate, computed_at = excluded.computed_at
    """


def _payment_sql(values: str) -> str:
    failed = "(p.status = 'canceled' OR (p.status <> 'succeeded' AND p.failure_code <> ''))"
    return f"""
    WITH d (day, day_start, day_end) AS ({values})
    INSERT INTO payment_analytics
        (date, total_payments, succeeded_payments, failed_payments, volume_minor, succeeded_volume_minor,
         success_rate, computed_at)
    SELECT day, total, succeeded, failed, volume, received,
           CASE WHEN succeeded + failed = 0 THEN 0 ELSE ROUND(succeeded * 1.0 / (succeeded + failed), 6) END, %s
    FROM (
        SELECT d.day,
               COUNT(p.id) AS total,
               COALESCE(SUM(CASE WHEN p.status = 'succeeded' THEN 1 ELSE 0 END), 0) AS succeeded,
               COALESCE(SUM(CASE WHEN {failed} THEN 1 ELSE 0 END), 0) AS failed,
               COALESCE(SUM(p.amount), 0) AS volume,
               COALESCE(SUM(CASE WHEN p.status = 'succeeded' THEN p.amount_received ELSE 0 END), 0) AS received
        FROM d
        LEFT JOIN payment_intents p ON p.created_at >= d.day_start AND p.created_at < d.day_end
        GROUP BY d.day
    ) per_day
    WHERE true
    ON CONFLICT (date) DO UPDATE SET
        total_payments = excluded.total_payments, succeeded_payments = excluded.succeeded_payments,
        failed_payments = excluded.failed_payments, volume_minor = excluded.volume_minor,
        succeeded_volume_minor = excluded.succeeded_volume_minor, success_rate = excluded.success_rate,
        computed_at = excluded.computed_at
    """


def days_between(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    if first > last:
        raise RollupError(f"{first} is after {last}")
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise RollupError(f"{count} days is more than {MAX_DAYS}; roll up in smaller ranges")
    return [first + datetime.timedelta(days=n) for n in range(count)]


def rollup(days: list[datetime.date], *, using: str = DEFAULT_DB_ALIAS) -> RollupResult:
    """Compute (or recompute) both analytics rows of each day, in one transaction."""
    if not days:
        return RollupResult(0, None, None)
    connection = connections[using]
    values, params = _days_values(connection, days)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(_subscription_sql(values), [*params, now])
        cursor.execute(_payment_sql(values), [*params, now])
    return RollupResult(len(days), min(days), max(days))
