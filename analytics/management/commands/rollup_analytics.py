"""`rollup_analytics [--date D | --since D]`: daily analytics rows, set-based and idempotent (analytics/rollup.py)."""

from __future__ import annotations

import datetime
import time

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from analytics.rollup import RollupError, days_between, rollup
from migrations_ops.errors import BadInput
from migrations_ops.management.base import OpsCommand
from migrations_ops.status import require_applied


def _date(value: str, option: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise BadInput(f"{option} {value!r} is not a date (YYYY-MM-DD)") from None


class Command(OpsCommand):
    help = (
        "Compute (or recompute) the daily subscription_analytics and payment_analytics rows: one day (--date), "
        "every day from --since to yesterday, or (default) yesterday. Re-running replaces the rows."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--date", help="the UTC day to roll up (YYYY-MM-DD)")
        parser.add_argument("--since", help="roll up every UTC day from this one through yesterday")
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default: default)")

    def handle(self, *args, **options) -> None:
        today = timezone.now().date()
        yesterday = today - datetime.timedelta(days=1)
        if options["date"] and options["since"]:
            raise BadInput("give --date or --since, not both")
        if options["date"]:
            first = last = _date(options["date"], "--date")
            if first > today:
                raise BadInput(f"--date {first} is in the future")
        elif options["since"]:
            first, last = _date(options["since"], "--since"), yesterday
            try:
                days_between(first, last)
            except RollupError as exc:
                raise BadInput(f"--since: {exc}") from None
        else:
            first = last = yesterday
        # The analytics tables and the upgrade's subscription columns: at the baseline, say which are missing.
        require_applied(("accounts", "billing", "loyalty", "analytics"), options["database"], "rollup_analytics")
        started = time.perf_counter()
        result = rollup(first, last, using=options["database"])
        elapsed = time.perf_counter() - started
        if self._json:
            self.print_json({**result.to_dict(), "duration_s": round(elapsed, 3)})
            return
        span = f"{result.first}" if result.days == 1 else f"{result.first} .. {result.last}"
        self.stdout.write(f"rolled up {result.days} day(s) ({span}) in {elapsed:.2f}s")
