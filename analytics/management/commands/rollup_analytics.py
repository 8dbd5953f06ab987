"""`rollup_analytics [--date D | --since D]`: daily analytics rows, set-based and idempotent (analytics/rollup.py)."""

from __future__ import annotations

import datetime
import time

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from analytics.rollup import RollupError, days_between, rollup

EXIT_BAD_INPUT = 2


def _date(value: str, option: str) -> datetime.date:
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        raise CommandError(f"{option} {value!r} is not a date (YYYY-MM-DD)", returncode=EXIT_BAD_INPUT) from None


class Command(BaseCommand):
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
            raise CommandError("give --date or --since, not both", returncode=EXIT_BAD_INPUT)
        if options["date"]:
            first = last = _date(options["date"], "--date")
            if first > today:
                raise CommandError(f"--date {first} is in the future", returncode=EXIT_BAD_INPUT)
        elif options["since"]:
            first, last = _date(options["since"], "--since"), yesterday
            try:
                days_between(first, last)
            except RollupError as exc:
                raise CommandError(f"--since: {exc}", returncode=EXIT_BAD_INPUT) from None
        else:
            first = last = yesterday
        started = time.perf_counter()
        result = rollup(first, last, using=options["database"])
        elapsed = time.perf_counter() - started
        span = f"{result.first}" if result.days == 1 else f"{result.first} .. {result.last}"
        self.stdout.write(f"rolled up {result.days} day(s) ({span}) in {elapsed:.2f}s")
