"""The daily analytics tables, summed from the generated subscriptions and payments (no query)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from analytics.models import PaymentAnalytics, SubscriptionAnalytics
from analytics.rollup import ratio_of
from common.money import monthly_recurring_revenue
from seeding.base import DAY, REFERENCE, date, timestamp

if TYPE_CHECKING:
    from seeding.run import Seeder


class SubscriptionDays:
    """Per-day subscription metrics of the last `days` days before REFERENCE, from deltas.

    MRR follows the rollup: the yearly totals of live subscriptions are summed in cents and divided
    by 12 once per day (rounding each subscription's monthly share would drift from rollup_analytics).
    """

    def __init__(self, days: int) -> None:
        self.days = days
        self.start = REFERENCE - days * DAY
        self.live_delta = [0] * (days + 1)  # index 0: before the window
        self.paused_delta = [0] * (days + 1)
        self.annual_delta = [0] * (days + 1)  # cents a year: a monthly total counts 12 times
        self.new = [0] * (days + 1)
        self.cancelled = [0] * (days + 1)

    def _slot(self, epoch: int) -> int:
        return 0 if epoch < self.start else 1 + (epoch - self.start) // DAY

    def add(self, started: int, ended: int | None, status: str, annual_cents: int) -> None:
        slot = self._slot(started)
        self.new[slot] += 1
        if status == "paused":
            self.paused_delta[slot] += 1
            return
        self.live_delta[slot] += 1
        self.annual_delta[slot] += annual_cents
        if ended is not None:
            end = self._slot(ended)
            self.live_delta[end] -= 1
            self.annual_delta[end] -= annual_cents
            self.cancelled[end] += 1

    def rows(self) -> list[dict[str, str]]:
        """The days' metrics by column (text, as the writer takes them)."""
        rows = []
        live, paused, annual = self.live_delta[0], self.paused_delta[0], self.annual_delta[0]
        for day in range(1, self.days + 1):
            before = live
            live += self.live_delta[day]
            paused += self.paused_delta[day]
            annual += self.annual_delta[day]
            rows.append(
                {
                    "date": date(self.start + (day - 1) * DAY),
                    "active_subscriptions": str(live),
                    "new_subscriptions": str(self.new[day]),
                    "cancelled_subscriptions": str(self.cancelled[day]),
                    "paused_subscriptions": str(paused),
                    "mrr": str(monthly_recurring_revenue(annual)),
                    "churn_rate": str(ratio_of(self.cancelled[day], before)),
                }
            )
        return rows


class PaymentDays:
    """Per-day payment metrics of the last `days` days before REFERENCE."""

    def __init__(self, days: int) -> None:
        self.days = days
        self.start = REFERENCE - days * DAY
        self.counts = [[0, 0, 0, 0, 0] for _ in range(days)]  # total, succeeded, failed, volume, received

    def add(self, created: int, amount: int, succeeded: bool, failed: bool) -> None:
        if created < self.start:
            return
        day = self.counts[(created - self.start) // DAY]
        day[0] += 1
        day[1] += succeeded
        day[2] += failed
        day[3] += amount
        day[4] += amount if succeeded else 0

    def rows(self) -> list[dict[str, str]]:
        """The days' metrics by column (text, as the writer takes them)."""
        rows = []
        for index, (total, succeeded, failed, volume, received) in enumerate(self.counts):
            rows.append(
                {
                    "date": date(self.start + index * DAY),
                    "total_payments": str(total),
                    "succeeded_payments": str(succeeded),
                    "failed_payments": str(failed),
                    "volume_minor": str(volume),
                    "succeeded_volume_minor": str(received),
                    # in-flight intents are neither: they count in total, not in the rate
                    "success_rate": str(ratio_of(succeeded, succeeded + failed)),
                }
            )
        return rows


def write_analytics(seeder: Seeder, days: int) -> int:
    """Daily rows for the window's dates that have none yet (both tables); the database assigns ids."""
    stamp = timestamp(REFERENCE)
    written = 0
    # Queries of this thread wait until the writer's thread is idle: one connection, one user
    # at a time (a query interleaved with a COPY in flight would hang both).
    seeder.writer.sync()
    tables = ((SubscriptionAnalytics, seeder.subscription_days), (PaymentAnalytics, seeder.payment_days))
    taken: dict[str, set[str]] = {}
    with seeder.connection.cursor() as cursor:
        for model, _source in tables:
            table = model._meta.db_table
            cursor.execute(f"SELECT date FROM {table} WHERE date >= %s", [date(REFERENCE - days * DAY)])
            taken[table] = {str(row[0]) for row in cursor.fetchall()}
    for model, source in tables:
        # by name: the analytics models' field order comes from their abstract base, not from here
        columns = seeder.columns(model, with_pk=False)
        fresh = [row for row in source.rows() if row["date"] not in taken[model._meta.db_table]]
        rows = [tuple({**row, "computed_at": stamp}[column] for column in columns) for row in fresh]
        seeder.write_rows(model, rows, with_pk=False)
        written = max(written, len(rows))
    return written
