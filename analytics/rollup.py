"""Daily analytics rollup: `subscription_analytics` and `payment_analytics`, one row per UTC day.

Set-based: one INSERT ... SELECT ... ON CONFLICT (date) DO UPDATE per table for all requested days
(a VALUES list of dates), so re-running a day replaces its row (idempotent). Subscriptions are read in
two scans whatever the number of days: the state at the start of the first day, plus per-day deltas
(starts, cancellations) summed with a window function. The SQL is shared by PostgreSQL and SQLite
(>= 3.24 for the upsert, 3.25 for window functions) except the UTC day of a timestamp (`Dialect`).

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
  of succeeded intents; both of intents in settings.ANALYTICS_CURRENCY only (minor units of
  different currencies are never added).
- payment_currency_analytics: per day and currency, counts and the two volumes; the days' rows are
  deleted and re-inserted in the same transaction (a currency that disappeared leaves no row).
"""

from __future__ import annotations

import datetime
import re
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.utils import timezone

from migrations_ops.dialect import UnsupportedVendor, for_vendor

MAX_DAYS = 3660
RATIO_PLACES = Decimal("0.000001")  # churn_rate and success_rate: six places


class RollupError(Exception):
    pass


@dataclass
class RollupResult:
    days: int
    first: datetime.date | None
    last: datetime.date | None

    def to_dict(self) -> dict:
        return asdict(self)


class Dialect:
    """The one spelling the engines disagree on: the UTC calendar day of a timestamp column."""

    def day_of(self, column: str) -> str:
        raise NotImplementedError


class PostgresDialect(Dialect):
    def day_of(self, column: str) -> str:
        return f"CAST(({column} AT TIME ZONE 'UTC') AS DATE)"


class SQLiteDialect(Dialect):
    def day_of(self, column: str) -> str:  # Django stores UTC text 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        return f"date({column})"


DIALECTS = {"postgresql": PostgresDialect(), "sqlite": SQLiteDialect()}


def _days_values(connection, days: list[datetime.date]) -> tuple[str, list]:
    rows, params = [], []
    for day in days:
        rows.append("(%s)")
        params.append(connection.ops.adapt_datefield_value(day))
    return "VALUES " + ", ".join(rows), params


def _cents(column: str) -> str:
    return f"CAST(ROUND({column} * 100) AS BIGINT)"


MONTHLY = f"CASE WHEN s.billing_interval = 'year' THEN 0 ELSE {_cents('COALESCE(s.total_cost, s.price)')} END"
YEARLY = f"CASE WHEN s.billing_interval = 'year' THEN {_cents('COALESCE(s.total_cost, s.price)')} ELSE 0 END"
LIVE = "s.status <> 'paused'"


# The metrics' rules in Python, for code that sums the rows it writes instead of rolling them up
# (seeding/; MRR is common.money.monthly_recurring_revenue): the SQL below spells the same
# rules, and tests/test_seeding.py checks that recomputing seeded days with rollup() changes nothing.


def ratio_of(part: int, whole: int) -> Decimal:
    """`part / whole` rounded half-up to six places, at most 1, and 0 when `whole` is not positive:
    churn_rate (cancelled / live at the start) and success_rate (succeeded / succeeded + failed)."""
    if whole <= 0:
        return Decimal(0).quantize(RATIO_PLACES)
    return min(Decimal(part) / whole, Decimal(1)).quantize(RATIO_PLACES, rounding=ROUND_HALF_UP)


def payment_failed(status: str, failure_code: str) -> bool:
    """A declined attempt: canceled, or not succeeded and carrying a failure code (the SQL's `failed`)."""
    return status == "canceled" or (status != "succeeded" and failure_code != "")


def _subscription_sql(dialect: Dialect, values: str) -> str:
    """Live counts and MRR from a baseline at the first day's start plus running per-day deltas
    (starts minus cancellations): two scans of subscriptions whatever the number of days."""
    return f"""
    WITH d (day) AS ({values}),
    starts AS (
        SELECT {dialect.day_of("s.started_at")} AS day, COUNT(*) AS new,
               SUM(CASE WHEN {LIVE} THEN 1 ELSE 0 END) AS live_in,
               SUM(CASE WHEN {LIVE} THEN 0 ELSE 1 END) AS paused_in,
               SUM(CASE WHEN {LIVE} THEN {MONTHLY} ELSE 0 END) AS monthly_in,
               SUM(CASE WHEN {LIVE} THEN {YEARLY} ELSE 0 END) AS yearly_in
        FROM subscriptions s WHERE s.started_at >= %(first)s AND s.started_at < %(end)s
        GROUP BY {dialect.day_of("s.started_at")}
    ),
    ends AS (
        SELECT {dialect.day_of("s.cancelled_at")} AS day, COUNT(*) AS cancelled,
               SUM(CASE WHEN {LIVE} AND s.started_at <= s.cancelled_at THEN 1 ELSE 0 END) AS live_out,
               SUM(CASE WHEN {LIVE} AND s.started_at <= s.cancelled_at THEN {MONTHLY} ELSE 0 END) AS monthly_out,
               SUM(CASE WHEN {LIVE} AND s.started_at <= s.cancelled_at THEN {YEARLY} ELSE 0 END) AS yearly_out
        FROM subscriptions s WHERE s.cancelled_at >= %(first)s AND s.cancelled_at < %(end)s
        GROUP BY {dialect.day_of("s.cancelled_at")}
    ),
    base AS (
        SELECT COALESCE(SUM(CASE WHEN {LIVE} AND (s.cancelled_at IS NULL OR s.cancelled_at >= %(first)s)
                                 THEN 1 ELSE 0 END), 0) AS live,
               COALESCE(SUM(CASE WHEN {LIVE} THEN 0 ELSE 1 END), 0) AS paused,
               COALESCE(SUM(CASE WHEN {LIVE} AND (s.cancelled_at IS NULL OR s.cancelled_at >= %(first)s)
                                 THEN {MONTHLY} ELSE 0 END), 0) AS monthly,
               COALESCE(SUM(CASE WHEN {LIVE} AND (s.cancelled_at IS NULL OR s.cancelled_at >= %(first)s)
                                 THEN {YEARLY} ELSE 0 END), 0) AS yearly
        FROM subscriptions s WHERE s.started_at < %(first)s
    ),
    per_day AS (
        SELECT d.day, COALESCE(st.new, 0) AS new, COALESCE(en.cancelled, 0) AS cancelled,
               COALESCE(st.live_in, 0) - COALESCE(en.live_out, 0) AS net,
               SUM(COALESCE(st.live_in, 0) - COALESCE(en.live_out, 0)) OVER w AS live_delta,
               SUM(COALESCE(st.paused_in, 0)) OVER w AS paused_delta,
               SUM(COALESCE(st.monthly_in, 0) - COALESCE(en.monthly_out, 0)) OVER w AS monthly_delta,
               SUM(COALESCE(st.yearly_in, 0) - COALESCE(en.yearly_out, 0)) OVER w AS yearly_delta
        FROM d LEFT JOIN starts st ON st.day = d.day LEFT JOIN ends en ON en.day = d.day
        WINDOW w AS (ORDER BY d.day ROWS UNBOUNDED PRECEDING)
    ),
    totals AS (
        SELECT p.day, b.live + p.live_delta AS active, p.new, p.cancelled, b.paused + p.paused_delta AS paused,
               b.live + p.live_delta - p.net AS live_at_start,
               (b.monthly + p.monthly_delta) * 12 + b.yearly + p.yearly_delta AS annual_cents
        FROM per_day p CROSS JOIN base b
    )
    INSERT INTO subscription_analytics
        (date, active_subscriptions, new_subscriptions, cancelled_subscriptions, paused_subscriptions,
         mrr, churn_rate, computed_at)
    SELECT day, active, new, cancelled, paused,
           CASE WHEN annual_cents > 0 THEN ROUND(annual_cents / 1200.0, 2) ELSE 0 END,
           CASE WHEN live_at_start <= 0 THEN 0
                WHEN cancelled >= live_at_start THEN 1
                ELSE ROUND(cancelled * 1.0 / live_at_start, 6) END,
           %(now)s
    FROM totals
    WHERE true
    ON CONFLICT (date) DO UPDATE SET
        active_subscriptions = excluded.active_subscriptions, new_subscriptions = excluded.new_subscriptions,
        cancelled_subscriptions = excluded.cancelled_subscriptions,
        paused_subscriptions = excluded.paused_subscriptions, mrr = excluded.mrr,
        churn_rate = excluded.churn_rate, computed_at = excluded.computed_at
    """


# payment_analytics adds up minor units of ANALYTICS_CURRENCY only (a yen is not a cent); every
# currency's volume is in payment_currency_analytics.
SAME_CURRENCY = "LOWER(p.currency) = %(currency)s"


def _payment_sql(dialect: Dialect, values: str) -> str:
    failed = "(p.status = 'canceled' OR (p.status <> 'succeeded' AND p.failure_code <> ''))"
    return f"""
    WITH d (day) AS ({values}),
    per_day AS (
        SELECT {dialect.day_of("p.created_at")} AS day, COUNT(*) AS total,
               SUM(CASE WHEN p.status = 'succeeded' THEN 1 ELSE 0 END) AS succeeded,
               SUM(CASE WHEN {failed} THEN 1 ELSE 0 END) AS failed,
               SUM(CASE WHEN {SAME_CURRENCY} THEN p.amount ELSE 0 END) AS volume,
               SUM(CASE WHEN {SAME_CURRENCY} AND p.status = 'succeeded' THEN p.amount_received ELSE 0 END)
                   AS received
        FROM payment_intents p WHERE p.created_at >= %(first)s AND p.created_at < %(end)s
        GROUP BY {dialect.day_of("p.created_at")}
    ),
    totals AS (
        SELECT d.day, COALESCE(x.total, 0) AS total, COALESCE(x.succeeded, 0) AS succeeded,
               COALESCE(x.failed, 0) AS failed, COALESCE(x.volume, 0) AS volume, COALESCE(x.received, 0) AS received
        FROM d LEFT JOIN per_day x ON x.day = d.day
    )
    INSERT INTO payment_analytics
        (date, total_payments, succeeded_payments, failed_payments, volume_minor, succeeded_volume_minor,
         success_rate, computed_at)
    SELECT day, total, succeeded, failed, volume, received,
           CASE WHEN succeeded + failed = 0 THEN 0 ELSE ROUND(succeeded * 1.0 / (succeeded + failed), 6) END,
           %(now)s
    FROM totals
    WHERE true
    ON CONFLICT (date) DO UPDATE SET
        total_payments = excluded.total_payments, succeeded_payments = excluded.succeeded_payments,
        failed_payments = excluded.failed_payments, volume_minor = excluded.volume_minor,
        succeeded_volume_minor = excluded.succeeded_volume_minor, success_rate = excluded.success_rate,
        computed_at = excluded.computed_at
    """


def _currency_delete_sql(dialect: Dialect, values: str) -> str:
    return "DELETE FROM payment_currency_analytics WHERE date >= %(first_day)s AND date <= %(last_day)s"


def _currency_sql(dialect: Dialect, values: str) -> str:
    """Volumes per day and currency (replacing the days' rows): minor units of one currency only."""
    day = dialect.day_of("p.created_at")
    return f"""
    INSERT INTO payment_currency_analytics
        (date, currency, total_payments, succeeded_payments, volume_minor, succeeded_volume_minor, computed_at)
    SELECT {day}, LOWER(p.currency), COUNT(*), SUM(CASE WHEN p.status = 'succeeded' THEN 1 ELSE 0 END),
           SUM(p.amount), SUM(CASE WHEN p.status = 'succeeded' THEN p.amount_received ELSE 0 END), %(now)s
    FROM payment_intents p WHERE p.created_at >= %(first)s AND p.created_at < %(end)s
    GROUP BY {day}, LOWER(p.currency)
    """


def days_between(first: datetime.date, last: datetime.date) -> list[datetime.date]:
    if first > last:
        raise RollupError(f"{first} is after {last}")
    count = (last - first).days + 1
    if count > MAX_DAYS:
        raise RollupError(f"{count} days is more than {MAX_DAYS}; roll up in smaller ranges")
    return [first + datetime.timedelta(days=n) for n in range(count)]


def rollup(first: datetime.date, last: datetime.date | None = None, *, using: str = DEFAULT_DB_ALIAS) -> RollupResult:
    """Compute (or recompute) both analytics rows of every day from `first` through `last`, in one transaction."""
    days = days_between(first, last or first)
    connection = connections[using]
    try:
        dialect = for_vendor(DIALECTS, connection, feature="the analytics rollup")
    except UnsupportedVendor as exc:
        raise RollupError(str(exc)) from None
    values, day_params = _days_values(connection, days)
    ops = connection.ops
    start = datetime.datetime.combine(days[0], datetime.time(), tzinfo=datetime.UTC)
    end = datetime.datetime.combine(days[-1], datetime.time(), tzinfo=datetime.UTC) + datetime.timedelta(days=1)
    named = {
        "first": ops.adapt_datetimefield_value(start),
        "end": ops.adapt_datetimefield_value(end),
        "now": ops.adapt_datetimefield_value(timezone.now()),
        "first_day": ops.adapt_datefield_value(days[0]),
        "last_day": ops.adapt_datefield_value(days[-1]),
        "currency": settings.ANALYTICS_CURRENCY.lower(),
    }
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for build in (_subscription_sql, _payment_sql, _currency_delete_sql, _currency_sql):
            sql, params = _named_to_positional(build(dialect, values), day_params, named)
            cursor.execute(sql, params)
    return RollupResult(len(days), days[0], days[-1])


def _named_to_positional(sql: str, day_params: list, named: dict) -> tuple[str, list]:
    """The VALUES list is positional (%s); the rest is named (%(first)s). Make it all positional, in order."""
    params: list = []
    values_index = 0

    def replace(match: re.Match) -> str:
        nonlocal values_index
        if match.group(1) is None:
            params.append(day_params[values_index])
            values_index += 1
        else:
            params.append(named[match.group(1)])
        return "%s"

    return re.sub(r"%(?:\((\w+)\))?s", replace, sql), params
