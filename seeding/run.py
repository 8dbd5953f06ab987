"""One seeding run: validate the request, lock and prepare the tables, run the phases in order (one
module per table), re-create what the writer set aside, reset the sequences; one transaction."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterable, Iterator

from django.core.management.color import no_style
from django.db import connections, transaction
from django.db.models import Model

from billing.models import PaymentIntent, Subscription
from loyalty.models import LoyaltyAccount, PointsTransaction
from migrations_ops.dialect import UnsupportedVendor
from seeding.analytics import write_analytics
from seeding.base import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DAYS,
    Progress,
    SeedRefused,
    SeedReport,
    array_of,
    batches,
)
from seeding.loyalty import write_accounts
from seeding.payments import write_payment_intents
from seeding.schema import detect_state, seeded_columns
from seeding.subscriptions import Offer, baseline_offers, pricing_offers, write_subscriptions
from seeding.users import write_users
from seeding.writers import Writer, writer_for


def seed(
    *,
    users: int,
    subscriptions: int,
    payment_intents: int | None = None,
    days: int = DEFAULT_DAYS,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    append: bool = False,
    using: str = "default",
    progress: Progress | None = None,
) -> SeedReport:
    """Seed demo data into database `using` in one transaction and return what was written.

    ``payment_intents`` defaults to ``subscriptions``; payment intents, loyalty data, pricing
    configs and analytics are written only at the head (see :func:`detect_state`). A database that
    already has users is refused unless ``append`` (then new users get emails with a fresh run tag,
    so they never collide with existing ones). Raises SeedRefused before writing anything.
    """
    if payment_intents is None:
        payment_intents = subscriptions
    for name, value in (
        ("users", users),
        ("subscriptions", subscriptions),
        ("payment-intents", payment_intents),
        ("days", days),
    ):
        if value < 0:
            raise SeedRefused(f"--{name} must not be negative (got {value})")
    if batch_size < 1:
        raise SeedRefused(f"--batch-size must be at least 1 (got {batch_size})")
    if subscriptions and not users:
        raise SeedRefused("subscriptions need users: pass --users as well")

    connection = connections[using]
    try:
        writer = writer_for(connection)
    except UnsupportedVendor as exc:
        raise SeedRefused(str(exc)) from None
    state = detect_state(using)
    started = time.perf_counter()
    report = SeedReport(state=state)
    rng = random.Random(seed)
    with transaction.atomic(using=using):
        tables = ["users", "subscriptions"]
        if state == "head":
            tables += ["pricing_configs", "payment_intents", "loyalty_accounts", "points_transactions"]
            tables += ["subscription_analytics", "payment_analytics"]
        writer.lock(tables)
        existing_users = _count(connection, "users")
        if existing_users and not append:
            raise SeedRefused(
                f"the database already has {existing_users:,} users: pass --append to add demo data to it "
                "(determinism holds for an empty database only)"
            )
        planned = {"users": users, "subscriptions": subscriptions}
        if state == "head":
            # points_transactions: about one per subscription plus welcome bonuses (an estimate)
            planned |= {
                "payment_intents": payment_intents,
                "loyalty_accounts": users,
                "points_transactions": subscriptions + users // 3,
            }
        try:
            bulk_started = time.perf_counter()
            report.rebuilt = writer.begin_bulk(planned)
            bulk_seconds = time.perf_counter() - bulk_started
            seeder = Seeder(connection, writer, rng, state, batch_size, progress, report)
            seeder.run(users, subscriptions, payment_intents if state == "head" else 0, days, existing_users)
            # what is left of re-creating constraints and indexes (most of it ran during generation)
            bulk_started = time.perf_counter()
            writer.end_bulk()
            report.seconds["constraints"] = bulk_seconds + time.perf_counter() - bulk_started
        finally:
            writer.close()
        with connection.cursor() as cursor:
            for sql in connection.ops.sequence_reset_sql(no_style(), seeder.models_with_assigned_ids()):
                cursor.execute(sql)
        committing = time.perf_counter()
    # On PostgreSQL the deferred foreign-key checks of every row run at commit.
    report.seconds["commit"] = time.perf_counter() - committing
    report.total_seconds = time.perf_counter() - started
    return report


def _count(connection, table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
        return int(cursor.fetchone()[0])


def _next_id(connection, table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")
        return int(cursor.fetchone()[0]) + 1


class Seeder:
    """One seeding run: the phases in order, sharing the per-user and per-subscription arrays.

    Phases generate each row's values in its model's field order; the columns are the model's
    (those the table has), read once per table.
    """

    def __init__(self, connection, writer: Writer, rng: random.Random, state, batch_size, progress, report) -> None:
        self.connection = connection
        self.using = connection.alias
        self.writer = writer
        self.rng = rng
        self.state = state
        self.head = state == "head"
        self.batch_size = batch_size
        self.progress = progress
        self.report = report
        self.null = writer.null
        self._columns: dict[tuple[type[Model], bool], tuple[str, ...]] = {}

    def models_with_assigned_ids(self) -> list[type[Model]]:
        return [Subscription, PaymentIntent, LoyaltyAccount, PointsTransaction] if self.head else [Subscription]

    def columns(self, model: type[Model], *, with_pk: bool = True) -> tuple[str, ...]:
        key = (model, with_pk)
        if key not in self._columns:
            self._columns[key] = seeded_columns(model, self.state, with_pk=with_pk)
        return self._columns[key]

    def write_rows(self, model: type[Model], rows: list[tuple], *, with_pk: bool = True) -> None:
        """Write one batch of `model` rows (values in its field order)."""
        if not rows:
            return
        columns = self.columns(model, with_pk=with_pk)
        if len(rows[0]) != len(columns):  # a model changed and its phase did not follow
            raise ValueError(f"{model._meta.db_table}: {len(rows[0])} values for the columns {columns}")
        self.writer.write(model._meta.db_table, columns, rows)

    def write(self, model: type[Model], rows: Iterator[tuple], total: int, phase: str) -> int:
        """Write all `rows` of `model` in batches, reporting progress of `phase`."""
        written = 0
        table = model._meta.db_table
        for batch in batches(rows, self.batch_size):
            self.write_rows(model, batch)
            written += len(batch)
            if self.progress and table == phase:
                self.progress(phase, written, total)
        return written

    def _timed(self, phase: str, work: Callable[[], None]) -> None:
        started = time.perf_counter()
        work()
        self.report.seconds[phase] = time.perf_counter() - started

    def _done(self, tables: Iterable[str]) -> None:
        for table in tables:
            self.writer.table_done(table)

    def run(self, users: int, subscriptions: int, payment_intents: int, days: int, existing_users: int) -> None:
        rng = self.rng
        self.days_window = days
        self.tag = self._run_tag(existing_users) if existing_users else ""
        self.uuid_offset = rng.getrandbits(128)
        if self.tag:
            self.uuid_offset ^= int(self.tag, 16) << 100
        self.offers = self._offers()
        # Subscriptions per user: each subscription goes to a uniformly random user.
        self.subs_per_user = array_of("l", users)
        randrange = rng.randrange
        for _ in range(subscriptions):
            self.subs_per_user[randrange(users)] += 1
        self.joined = array_of("q", users)
        # The first free ids, read before any write (the writer may still be busy later on).
        tables = ["subscriptions"] + (
            ["loyalty_accounts", "points_transactions", "payment_intents"] if self.head else []
        )
        self.next_ids = {table: _next_id(self.connection, table) for table in tables}
        self._timed("users", lambda: self._users(users))
        self._done(["users"])
        self.report.counts["users"] = users

        self.account_base = self.next_ids.get("loyalty_accounts", 0)
        self.balances = array_of("q", users if self.head else 0)
        self.lifetime = array_of("q", users if self.head else 0)
        self._timed("subscriptions", lambda: self._subscriptions(users, subscriptions))
        self._done(["subscriptions", "points_transactions"])
        self.report.counts["subscriptions"] = subscriptions
        if not self.head:
            return
        self.report.counts["points_transactions"] = self.transactions_written
        self._timed("payment_intents", lambda: self._payment_intents(payment_intents))
        self._done(["payment_intents"])
        self.report.counts["payment_intents"] = payment_intents
        self._timed("loyalty_accounts", lambda: self._accounts(users))
        self._done(["loyalty_accounts"])
        self.report.counts["loyalty_accounts"] = users
        self.report.counts["analytics_days"] = self._analytics(days)

    def _run_tag(self, existing_users: int) -> str:
        """A tag that no existing email contains, so appended users never collide."""
        tag_rng = random.Random(f"{self.rng.random()}:{existing_users}")
        with self.connection.cursor() as cursor:
            for _ in range(100):
                tag = f"{tag_rng.getrandbits(32):08x}"
                cursor.execute("SELECT COUNT(*) FROM users WHERE email LIKE %s", [f"%.{tag}@%"])
                if cursor.fetchone()[0] == 0:
                    return tag
        raise SeedRefused("could not find a fresh email tag for appended users")

    # -- phases, one module per table (methods, so a test can replace one) ------------------------

    def _offers(self) -> list[tuple[str, list[Offer]]]:
        return pricing_offers(self) if self.head else baseline_offers(self)

    def _users(self, count: int) -> None:
        write_users(self, count)

    def _subscriptions(self, users: int, total: int) -> None:
        write_subscriptions(self, users, total)

    def _payment_intents(self, count: int) -> None:
        write_payment_intents(self, count)

    def _accounts(self, users: int) -> None:
        write_accounts(self, users)

    def _analytics(self, days: int) -> int:
        return write_analytics(self, days)
