"""`seed_demo_data`: deterministic demo data, a million rows a minute (logic: the seeding package)."""

from __future__ import annotations

import sys
import time

from django.db import DEFAULT_DB_ALIAS

from migrations_ops.errors import BadInput
from migrations_ops.management.base import OpsCommand
from seeding import DEFAULT_BATCH_SIZE, DEFAULT_DAYS, SeedRefused, seed

# The options passed to seed() under their own names (each is a keyword of seed()).
SEED_OPTIONS = ("users", "subscriptions", "payment_intents", "days", "seed", "batch_size", "append")


class ProgressBar:
    """A one-line bar on stderr, redrawn at most ten times a second."""

    def __init__(self, stream, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.phase: str | None = None
        self.started = time.perf_counter()
        self.drawn = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.perf_counter()
        if phase != self.phase:
            self.finish()
            self.phase, self.started = phase, now
        if done < total and now - self.drawn < 0.1:
            return
        self.drawn = now
        fraction = done / total if total else 1.0
        filled = int(self.width * fraction)
        rate = done / (now - self.started) if now > self.started else 0.0
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{phase:<16} [{bar}] {fraction:6.1%} {done:,}/{total:,} {rate:,.0f} rows/s")
        self.stream.flush()

    def finish(self) -> None:
        if self.phase is not None:
            self.stream.write("\n")
            self.stream.flush()
            self.phase = None


class Command(OpsCommand):
    """The operator contract's shape (OpsCommand): --database-url, --json, one `error:` line, exit 2
    for refusals and an unreachable database."""

    help = (
        "Seed deterministic demo data (users, subscriptions, payment intents, loyalty, analytics). "
        "On a database at the baseline migration state only users and baseline subscriptions are seeded. "
        "Refuses a database that already has users unless --append."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--users", type=int, default=100, help="users to create (default 100)")
        parser.add_argument("--subscriptions", type=int, default=150, help="subscriptions to create (default 150)")
        parser.add_argument(
            "--payment-intents",
            type=int,
            default=None,
            help="payment intents to create (default: as many as subscriptions; none at the baseline)",
        )
        parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="days of analytics (default 30)")
        parser.add_argument("--seed", type=int, default=0, help="random seed: same seed, same data (default 0)")
        parser.add_argument(
            "--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="rows per COPY/executemany batch"
        )
        parser.add_argument(
            "--append", action="store_true", help="add to a database that already has users (new, unique emails)"
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS, help="database alias (default: default)")

    def handle(self, *args, **options) -> None:
        verbosity = int(options["verbosity"])
        bar = ProgressBar(sys.stderr) if verbosity >= 1 and sys.stderr.isatty() and not self._json else None
        try:
            report = seed(**{name: options[name] for name in SEED_OPTIONS}, using=options["database"], progress=bar)
        except SeedRefused as exc:
            raise BadInput(str(exc)) from exc
        finally:
            if bar is not None:
                bar.finish()
        if self._json:
            self.print_json(report.to_dict())
            return
        if report.state == "baseline":
            self.info("baseline database: seeded users and baseline subscription columns only")
        self.info(report.summary())
