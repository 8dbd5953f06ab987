"""Deterministic demo data, fast enough for a million rows (the logic behind `seed_demo_data`).

What it writes depends on the schema it finds (:func:`detect_state`):

* ``head`` (the upgrade applied): users with permissions, subscriptions with the full cost
  breakdown, demo pricing configs next to the migration's defaults, Stripe payment intents, one
  loyalty account per user with a consistent points ledger, and daily analytics.
* ``baseline`` (accounts 0001 + billing 0001 only): users and the baseline subscription columns,
  the state of production before the upgrade (what the migration benchmark starts from).

Everything comes from one ``random.Random(seed)`` and a fixed reference time, so the same seed on
an empty database gives the same rows. Rows are generated in batches as tuples of strings and
handed to a writer: COPY on PostgreSQL, ``executemany`` on SQLite, all in one transaction.
Primary keys are assigned here (after the table's current maximum) so that foreign keys between
the generated rows are known without reading anything back; sequences are reset at the end.

Invariants the data keeps (they are what ``validate_db`` checks):
``total_cost = base_cost + delivery_cost + tax_amount - discount_amount - loyalty_discount`` and
every amount is non-negative; ``price = total_cost``; each user has one loyalty account whose
``points_balance`` is the sum of its transactions and whose ``balance_after`` is the running sum in
id order, never negative; earn > 0, redeem/expire < 0; active pricing configs of one plan and
variant never overlap (windows are half-open); one analytics row per date.
"""

from __future__ import annotations

import calendar
import datetime
import io
import json
import queue
import random
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings
from django.core.management.color import no_style
from django.db import connections, transaction
from django.db.models import Q

from accounts.models import ROLE_PERMISSIONS

# The fixed "now" of demo data: every timestamp is derived from it, never from the clock.
REFERENCE = calendar.timegm((2026, 1, 1, 0, 0, 0))
DAY = 86_400
DEFAULT_BATCH_SIZE = 20_000
DEFAULT_DAYS = 30

UPGRADE_TABLES = frozenset(
    {
        "pricing_configs",
        "subscription_cost_history",
        "payment_intents",
        "loyalty_accounts",
        "points_transactions",
        "subscription_analytics",
        "payment_analytics",
    }
)
# The fourteen columns billing 0002 adds, in the order COPY writes them.
UPGRADE_SUBSCRIPTION_COLUMN_ORDER = (
    "variant_id",
    "variant_name",
    "pricing_config_id",
    "base_cost",
    "delivery_cost",
    "tax_amount",
    "discount_amount",
    "loyalty_discount",
    "total_cost",
    "delivery_frequency",
    "next_delivery_date",
    "delivery_address",
    "loyalty_account_id",
    "points_earned",
)
UPGRADE_SUBSCRIPTION_COLUMNS = frozenset(UPGRADE_SUBSCRIPTION_COLUMN_ORDER)

USER_COLUMNS = (
    "id",
    "password",
    "last_login",
    "is_superuser",
    "email",
    "full_name",
    "role",
    "is_active",
    "is_staff",
    "date_joined",
)
BASELINE_SUBSCRIPTION_COLUMNS = (
    "id",
    "user_id",
    "plan",
    "status",
    "price",
    "currency",
    "billing_interval",
    "started_at",
    "cancelled_at",
    "created_at",
    "updated_at",
)
HEAD_SUBSCRIPTION_COLUMNS = BASELINE_SUBSCRIPTION_COLUMNS + UPGRADE_SUBSCRIPTION_COLUMN_ORDER
TRANSACTION_COLUMNS = (
    "id",
    "account_id",
    "points",
    "kind",
    "subscription_id",
    "payment_intent_id",
    "balance_after",
    "description",
    "created_at",
)
ACCOUNT_COLUMNS = ("id", "user_id", "points_balance", "lifetime_points", "tier", "created_at", "updated_at")
PAYMENT_INTENT_COLUMNS = (
    "id",
    "stripe_payment_intent_id",
    "subscription_id",
    "user_id",
    "amount",
    "amount_received",
    "currency",
    "status",
    "failure_code",
    "failure_message",
    "metadata",
    "last_event_id",
    "last_event_created",
    "created_at",
    "updated_at",
    "succeeded_at",
)
SUBSCRIPTION_ANALYTICS_COLUMNS = (
    "date",
    "active_subscriptions",
    "new_subscriptions",
    "cancelled_subscriptions",
    "paused_subscriptions",
    "mrr",
    "churn_rate",
    "computed_at",
)
PAYMENT_ANALYTICS_COLUMNS = (
    "date",
    "total_payments",
    "succeeded_payments",
    "failed_payments",
    "volume_minor",
    "succeeded_volume_minor",
    "success_rate",
    "computed_at",
)

# Word lists. COPY's text format needs no escaping because no value generated here can contain a
# tab, a newline or a backslash (checked at import, below).
FIRST_NAMES = [
    "Ada",
    "Alan",
    "Amara",
    "Ana",
    "Ben",
    "Carla",
    "Chen",
    "Dara",
    "Diego",
    "Elena",
    "Emil",
    "Farah",
    "Grace",
    "Hana",
    "Ines",
    "Ivan",
    "Jonas",
    "Kai",
    "Lena",
    "Liam",
    "Maya",
    "Mei",
    "Nadia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Sofia",
    "Tariq",
    "Uma",
    "Victor",
    "Wen",
    "Yara",
    "Zoe",
]
LAST_NAMES = [
    "Abbott",
    "Bauer",
    "Costa",
    "Dubois",
    "Eriksen",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Moreau",
    "Nakamura",
    "Okafor",
    "Petrov",
    "Quispe",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Ueda",
    "Varga",
    "Weber",
    "Xu",
    "Yilmaz",
    "Zhang",
]
DOMAINS = ("example.com", "example.org", "example.net")
STREETS = ("Main St", "Oak Ave", "Elm St", "Park Rd", "Lake Dr", "Hill St", "River Rd", "Cedar Ln")
CITIES = ("Springfield", "Riverton", "Fairview", "Madison", "Georgetown", "Clinton", "Salem", "Franklin")
for _word in (*FIRST_NAMES, *LAST_NAMES, *DOMAINS, *STREETS, *CITIES):
    assert not set(_word) & {"\t", "\n", "\r", "\\", '"'}, _word

# Baseline prices (no pricing configs exist yet): the migration's default configs, yearly = 12x.
BASELINE_PRICES_CENTS = {"basic": 999, "standard": 1999, "premium": 3999}
PLAN_WEIGHTS = (("basic", 0.50), ("standard", 0.35), ("premium", 0.15))
# (status, cumulative probability)
STATUSES = (("active", 0.70), ("paused", 0.78), ("past_due", 0.85), ("cancelled", 1.0))
DELIVERIES_PER_MONTH = {"weekly": 4, "biweekly": 2, "monthly": 1}
# (status, cumulative probability, failure code, failure message)
PAYMENT_OUTCOMES = (
    ("succeeded", 0.80, "", ""),
    ("requires_payment_method", 0.88, "card_declined", "Your card was declined."),
    ("requires_action", 0.92, "", ""),
    ("processing", 0.95, "", ""),
    ("canceled", 1.0, "", ""),
)
WELCOME_BONUS = 500

# Demo pricing configs created next to the migration's defaults (skipped when an active config of
# the plan and variant already overlaps the window). Windows are half-open: [from, until).
DEMO_PRICING = (
    # plan, variant_id, variant_name, base, delivery, tax, discount, rules, points/unit, from, until
    ("basic", "eco-box", "Eco box", "12.99", "2.99", "0.0800", "0", {}, "1.00", (2024, 6, 1), None),
    ("standard", "family-box", "Family box", "27.99", "4.99", "0.0825", "0", {}, "1.00", (2024, 1, 1), (2025, 1, 1)),
    (
        "standard",
        "family-box",
        "Family box",
        "29.99",
        "4.99",
        "0.0825",
        "0.0500",
        {"min_months": 12, "rate": "0.10"},
        "1.00",
        (2025, 1, 1),
        None,
    ),
    (
        "premium",
        "chef-select",
        "Chef select",
        "59.99",
        "0",
        "0.0825",
        "0.1000",
        {"min_months": 12, "rate": "0.05"},
        "2.00",
        (2024, 1, 1),
        None,
    ),
)
DEMO_PRICING_PREFIX = "Demo pricing: "

_UUID_MULT = 0x9E3779B97F4A7C15F39CC0605CEDC835  # odd, so index -> uuid is a bijection mod 2**128
_MASK128 = (1 << 128) - 1
_VERSION_CLEAR = _MASK128 ^ ((0xF << 76) | (0x3 << 62))
_VERSION_BITS = (0x4 << 76) | (0x2 << 62)  # version 4, RFC 4122 variant


class SeedRefused(ValueError):
    """Bad input or a database we will not seed; nothing was written."""


Progress = Callable[[str, int, int], None]


@dataclass
class SeedReport:
    """What was written, how long each phase took, and the schema state that was seeded."""

    state: str
    counts: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    total_seconds: float = 0.0
    # tables whose foreign keys and secondary indexes were dropped for the load and re-created
    rebuilt: list[str] = field(default_factory=list)

    def rate(self, table: str) -> float:
        """Rows per second of `table`'s phase (its rows over the wall time of that phase)."""
        seconds = self.seconds.get(table, 0.0)
        return self.counts.get(table, 0) / seconds if seconds > 0 else 0.0

    def summary(self) -> str:
        """One line: counts, phase rates and the total time."""
        parts = []
        for table, count in self.counts.items():
            rate = f" ({self.rate(table):,.0f}/s)" if table in self.seconds and count else ""
            parts.append(f"{table}={count:,}{rate}")
        commit = f", commit {self.seconds['commit']:.1f}s" if "commit" in self.seconds else ""
        if self.seconds.get("constraints", 0.0) >= 0.05:
            commit = f", constraints and indexes {self.seconds['constraints']:.1f}s" + commit
        return f"seeded {self.state} database: {', '.join(parts)} in {self.total_seconds:.1f}s{commit}"


# --------------------------------------------------------------------------------------- writers


class _Writer:
    """Bulk-inserts batches of rows (tuples of str, or ``null`` for NULL) into one table."""

    null: str | None = None

    def __init__(self, connection) -> None:
        self.connection = connection
        self.qn = connection.ops.quote_name

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        raise NotImplementedError

    def lock(self, tables: Iterable[str]) -> None:
        """Keep concurrent writers out of `tables` until commit (the keys we assign must stay free)."""

    def begin_bulk(self, planned: dict[str, int]) -> list[str]:
        """Before the first write: make loading `planned` rows per table cheap (inside the transaction);
        return the tables it prepared."""
        return []

    def table_done(self, table: str) -> None:
        """Every row of `table` has been written."""

    def end_bulk(self) -> None:
        """After the last write: undo :meth:`begin_bulk` exactly (raises if the data breaks a constraint)."""

    def sync(self) -> None:
        """Wait until every write submitted so far has reached the database."""

    def close(self) -> None:
        """Release what the writer holds (always called, before the transaction ends)."""


# Foreign keys and unique/exclusion constraints of one table, and its indexes that no constraint owns.
# Kept: primary keys (foreign keys depend on them), indexes a foreign key relies on, invalid indexes
# (re-creating one would make it valid) and check/not-null constraints (cheap per row).
_PG_TABLE_CONSTRAINTS_SQL = """
SELECT con.conname, con.contype, pg_get_constraintdef(con.oid),
       CASE WHEN con.contype = 'f' THEN con.confrelid::regclass::text END
FROM pg_constraint con
WHERE con.conrelid = %s::regclass
  AND (con.contype = 'f'
       OR (con.contype IN ('u', 'x')
           AND NOT EXISTS (SELECT 1 FROM pg_constraint fk WHERE fk.contype = 'f' AND fk.conindid = con.conindid)))
ORDER BY con.contype = 'f', con.conname
"""
_PG_TABLE_INDEXES_SQL = """
SELECT ic.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i
JOIN pg_class ic ON ic.oid = i.indexrelid
WHERE i.indrelid = %s::regclass AND NOT i.indisprimary AND i.indisvalid AND i.indisready
  AND NOT EXISTS (SELECT 1 FROM pg_constraint con WHERE con.conindid = i.indexrelid)
ORDER BY ic.relname
"""
# For the load only: index builds and foreign-key validation sort and hash in memory.
_PG_BULK_SETTINGS = {"maintenance_work_mem": "256MB", "work_mem": "256MB"}


@dataclass
class _Dropped:
    """What was dropped from one table for the load, as the catalog defined it."""

    table: str
    constraints: list[tuple[str, str, str, str | None]]  # name, kind, definition, referenced table
    indexes: list[tuple[str, str]]  # name, CREATE INDEX statement
    rebuilt: bool = False


class _PostgresCopyWriter(_Writer):
    """COPY in text format, sent by a background thread so the server ingests one batch while
    Python generates the next (two cores busy instead of one, taking turns).

    For a bulk load the foreign keys and secondary indexes of the tables being filled are dropped
    first and re-created, in the same transaction, as soon as each table is complete (while later
    tables are still being generated). Re-adding a foreign key validates it with one set-based
    join instead of one deferred trigger call per row at commit (8M of them at 1M subscriptions),
    and building an index once is much cheaper than maintaining it row by row. Definitions are
    read from the catalog (``pg_get_constraintdef`` / ``pg_get_indexdef``) before dropping, so they
    come back with the same names and definitions; a violation raises and the whole seed rolls
    back (DDL is transactional in PostgreSQL, so the constraints are back as well).
    """

    null = "\\N"
    # Do it for a table only when it pays: re-creating costs a pass over the whole table, maintaining
    # costs a step per inserted row. Rows inserted must be at least this share of the rows present.
    BULK_MIN_RATIO = 1.0
    QUEUE_BATCHES = 8

    def __init__(self, connection) -> None:
        super().__init__(connection)
        self._dropped: dict[str, _Dropped] = {}
        self._done: set[str] = set()
        self._fks_added: set[tuple[str, str]] = set()
        self._restore_settings: dict[str, str] = {}
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._abort = False

    # -- the background thread: statements and COPYs, strictly in submission order -----------------

    def _submit(self, sql: str, payload: str | None = None) -> None:
        self._raise_error()
        if self._thread is None:
            self._queue = queue.Queue(maxsize=self.QUEUE_BATCHES)
            self._thread = threading.Thread(target=self._work, name="seed-copy", daemon=True)
            self._thread.start()
        self._queue.put((sql, payload))

    def _work(self) -> None:
        raw = self.connection.connection  # the DB-API connection: Django's wrapper is per thread
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None and not self._abort:
                    sql, payload = item
                    with raw.cursor() as cursor:
                        if payload is None:
                            cursor.execute(sql)
                        else:
                            cursor.copy_expert(sql, io.StringIO(payload), size=1 << 20)
            except BaseException as exc:  # re-raised in the seeding thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_error(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            self._abort = True
            with self.connection.wrap_database_errors:  # psycopg2's error as Django's
                raise error

    def sync(self) -> None:
        """Wait until everything submitted has run; raise its error, if any."""
        if self._queue is not None:
            self._queue.join()
        self._raise_error()

    def close(self) -> None:
        """Stop the thread (skipping what is still queued when seeding failed) before the
        transaction ends: nothing may run on the connection behind a rollback."""
        if self._thread is None:
            return
        if self._error is not None or sys.exc_info()[0] is not None:
            self._abort = True
        self._queue.put(None)
        self._thread.join()
        self._thread = None

    # -- the writer API ----------------------------------------------------------------------------

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        payload = "\n".join(["\t".join(row) for row in rows]) + "\n"
        self._submit(f"COPY {self.qn(table)} ({', '.join(self.qn(c) for c in columns)}) FROM STDIN", payload)

    def lock(self, tables: Iterable[str]) -> None:
        with self.connection.cursor() as cursor:
            cursor.execute(f"LOCK TABLE {', '.join(self.qn(t) for t in tables)} IN SHARE ROW EXCLUSIVE MODE")

    def begin_bulk(self, planned: dict[str, int]) -> list[str]:
        qn = self.qn
        with self.connection.cursor() as cursor:
            for table, rows in planned.items():
                if not rows:
                    continue
                cursor.execute(f"SELECT COUNT(*) FROM {qn(table)}")
                if rows < self.BULK_MIN_RATIO * cursor.fetchone()[0]:
                    continue
                cursor.execute(_PG_TABLE_CONSTRAINTS_SQL, [qn(table)])
                constraints = cursor.fetchall()
                cursor.execute(_PG_TABLE_INDEXES_SQL, [qn(table)])
                # the definitions are read before anything of this table is dropped
                self._dropped[table] = _Dropped(table, constraints, cursor.fetchall())
            if not self._dropped:
                return []
            for dropped in self._dropped.values():
                for name, _kind, _definition, _parent in reversed(dropped.constraints):  # foreign keys first
                    cursor.execute(f"ALTER TABLE {qn(dropped.table)} DROP CONSTRAINT {qn(name)}")
                for name, _definition in dropped.indexes:
                    cursor.execute(f"DROP INDEX {qn(name)}")
            for setting, value in _PG_BULK_SETTINGS.items():  # until end_bulk (local to the transaction)
                cursor.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [setting, setting, value])
                self._restore_settings[setting] = cursor.fetchone()[0]
        return list(self._dropped)

    def table_done(self, table: str) -> None:
        """`table` has all its rows: re-create its indexes now (in the background), and the foreign
        keys whose two tables are complete."""
        dropped = self._dropped.get(table)
        self._done.add(table)
        if dropped is None or dropped.rebuilt:
            return
        dropped.rebuilt = True
        qn = self.qn
        for _name, definition in dropped.indexes:
            self._submit(definition)
        for name, kind, definition, _parent in dropped.constraints:
            if kind != "f":
                self._submit(f"ALTER TABLE {qn(table)} ADD CONSTRAINT {qn(name)} {definition}")
        self._submit(f"ANALYZE {qn(table)}")  # fresh statistics for the validation that follows
        self._add_foreign_keys(final=False)

    def _add_foreign_keys(self, *, final: bool) -> None:
        complete = lambda t: t not in self._dropped or self._dropped[t].rebuilt  # noqa: E731
        for dropped in self._dropped.values():
            for name, kind, definition, parent in dropped.constraints:
                if kind != "f" or (dropped.table, name) in self._fks_added:
                    continue
                if final or (complete(dropped.table) and complete(parent.split(".")[-1].strip('"'))):
                    self._fks_added.add((dropped.table, name))
                    self._submit(f"ALTER TABLE {self.qn(dropped.table)} ADD CONSTRAINT {self.qn(name)} {definition}")

    def end_bulk(self) -> None:
        for table in self._dropped:
            self.table_done(table)
        self._add_foreign_keys(final=True)
        self.sync()
        if self._restore_settings:
            with self.connection.cursor() as cursor:
                for setting, value in self._restore_settings.items():
                    cursor.execute("SELECT set_config(%s, %s, true)", [setting, value])
        self._restore_settings = {}


class _SQLiteWriter(_Writer):
    null = None

    def write(self, table: str, columns: Sequence[str], rows: list[tuple]) -> None:
        if not rows:
            return
        placeholders = ", ".join(["%s"] * len(columns))
        sql = f"INSERT INTO {self.qn(table)} ({', '.join(self.qn(c) for c in columns)}) VALUES ({placeholders})"
        with self.connection.cursor() as cursor:
            cursor.executemany(sql, rows)


WRITERS: dict[str, type[_Writer]] = {"postgresql": _PostgresCopyWriter, "sqlite": _SQLiteWriter}


# --------------------------------------------------------------------------------------- helpers


def detect_state(using: str = "default") -> str:
    """Return ``"head"`` when the upgrade's tables and columns exist, ``"baseline"`` when none do.

    Raises SeedRefused for a database without the baseline tables or part-way through the upgrade.
    """
    connection = connections[using]
    tables = set(connection.introspection.table_names())
    if not {"users", "subscriptions"} <= tables:
        raise SeedRefused("the database has no users/subscriptions tables: run migrate first")
    with connection.cursor() as cursor:
        sub_columns = {c.name for c in connection.introspection.get_table_description(cursor, "subscriptions")}
        user_columns = {c.name for c in connection.introspection.get_table_description(cursor, "users")}
    upgrade_present = (
        UPGRADE_TABLES & tables,
        UPGRADE_SUBSCRIPTION_COLUMNS & sub_columns,
        "permissions" in user_columns,
    )
    if tables >= UPGRADE_TABLES and sub_columns >= UPGRADE_SUBSCRIPTION_COLUMNS and "permissions" in user_columns:
        return "head"
    if not any(upgrade_present):
        return "baseline"
    raise SeedRefused(
        "the database is part-way through the upgrade (some of its tables or columns exist): "
        "migrate to the baseline or to the head first"
    )


def user_uuid_hex(index: int, offset: int) -> str:
    """The id of generated user `index`: a bijection of (index + offset) shaped as a version-4 UUID,
    so later phases recompute a user's id instead of holding a million of them in memory."""
    value = ((index + offset) * _UUID_MULT) & _MASK128
    return f"{(value & _VERSION_CLEAR) | _VERSION_BITS:032x}"


def _timestamp(epoch: int) -> str:
    """Naive UTC text, the form Django stores on SQLite and PostgreSQL reads in its UTC session."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(epoch))


def _date(epoch: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(epoch))


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _cents(value: Decimal | str) -> int:
    return int(Decimal(value) * 100)


def _basis_points(rate: Decimal | str) -> int:
    """A rate in [0, 1] with four places as an integer in [0, 10000]."""
    return int(Decimal(rate) * 10_000)


def _half_up(numerator: int, denominator: int) -> int:
    return (2 * numerator + denominator) // (2 * denominator)


def _next_id(connection, table: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {connection.ops.quote_name(table)}")
        return int(cursor.fetchone()[0]) + 1


def _batches(rows: Iterator[tuple], size: int) -> Iterator[list[tuple]]:
    batch: list[tuple] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _tier(lifetime: int, thresholds: list[tuple[int, str]]) -> str:
    tier = thresholds[0][1]
    for minimum, name in thresholds:
        if lifetime >= minimum:
            tier = name
    return tier


@dataclass
class _Offer:
    """A plan variant subscriptions can be sold at, from one pricing config (or the baseline price)."""

    plan: str
    variant_id: str
    variant_name: str
    config_id: str
    base: int  # cents per month
    delivery: int  # cents per delivery
    tax_bp: int
    discount_bp: int
    yearly_extra_bp: int
    points_per_unit_cents: int


# --------------------------------------------------------------------------------------- the seed


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
    writer = WRITERS[connection.vendor](connection)
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
            seeder = _Seeder(connection, writer, rng, state, batch_size, progress, report)
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


class _Seeder:
    """One seeding run: the phases in order, sharing the per-user and per-subscription arrays."""

    def __init__(self, connection, writer: _Writer, rng: random.Random, state, batch_size, progress, report) -> None:
        self.connection = connection
        self.using = connection.alias
        self.writer = writer
        self.rng = rng
        self.head = state == "head"
        self.batch_size = batch_size
        self.progress = progress
        self.report = report
        self.null = writer.null

    def models_with_assigned_ids(self) -> list:
        from billing.models import PaymentIntent, Subscription
        from loyalty.models import LoyaltyAccount, PointsTransaction

        return [Subscription, PaymentIntent, LoyaltyAccount, PointsTransaction] if self.head else [Subscription]

    def _write(self, table: str, columns: Sequence[str], rows: Iterator[tuple], total: int, phase: str) -> int:
        written = 0
        for batch in _batches(rows, self.batch_size):
            self.writer.write(table, columns, batch)
            written += len(batch)
            if self.progress and table == phase:
                self.progress(phase, written, total)
        return written

    def _timed(self, phase: str, work: Callable[[], None]) -> None:
        started = time.perf_counter()
        work()
        self.report.seconds[phase] = time.perf_counter() - started

    def run(self, users: int, subscriptions: int, payment_intents: int, days: int, existing_users: int) -> None:
        rng = self.rng
        self.days_window = days
        self.tag = self._run_tag(existing_users) if existing_users else ""
        self.uuid_offset = rng.getrandbits(128)
        if self.tag:
            self.uuid_offset ^= int(self.tag, 16) << 100
        self.offers = self._pricing_offers() if self.head else self._baseline_offers()
        # Subscriptions per user: each subscription goes to a uniformly random user.
        self.subs_per_user = array("l", bytes(8 * users)) if users else array("l")
        randrange = rng.randrange
        for _ in range(subscriptions):
            self.subs_per_user[randrange(users)] += 1
        self.joined = array("q", bytes(8 * users))
        # The first free ids, read before any write (the writer may still be busy later on).
        tables = ["subscriptions"] + (
            ["loyalty_accounts", "points_transactions", "payment_intents"] if self.head else []
        )
        self.next_ids = {table: _next_id(self.connection, table) for table in tables}
        self._timed("users", lambda: self._users(users))
        self.writer.table_done("users")
        self.report.counts["users"] = users

        self.account_base = self.next_ids.get("loyalty_accounts", 0)
        self.balances = array("q", bytes(8 * users)) if self.head else array("q")
        self.lifetime = array("q", bytes(8 * users)) if self.head else array("q")
        self._timed("subscriptions", lambda: self._subscriptions(users, subscriptions))
        self.writer.table_done("subscriptions")
        self.writer.table_done("points_transactions")
        self.report.counts["subscriptions"] = subscriptions
        if not self.head:
            return
        self.report.counts["points_transactions"] = self.transactions_written
        self._timed("payment_intents", lambda: self._payment_intents(payment_intents, days))
        self.writer.table_done("payment_intents")
        self.report.counts["payment_intents"] = payment_intents
        self._timed("loyalty_accounts", lambda: self._accounts(users))
        self.writer.table_done("loyalty_accounts")
        self.report.counts["loyalty_accounts"] = users
        self.report.counts["analytics_days"] = self._analytics(days)

    # -- phases ------------------------------------------------------------------------------------

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

    def _users(self, count: int) -> None:
        rng = self.rng
        head = self.head
        null = self.null
        random_ = rng.random
        choice = rng.choice
        randrange = rng.randrange
        getrandbits = rng.getrandbits
        joined = self.joined
        offset = self.uuid_offset
        tag = f".{self.tag}" if self.tag else ""
        permissions = {
            role: json.dumps({"admin": p["admin"], "manage_users": p["manage_users"]})
            for role, p in ROLE_PERMISSIONS.items()
        }
        columns = USER_COLUMNS + (("permissions",) if head else ())
        earliest = REFERENCE - 3 * 365 * DAY

        def rows() -> Iterator[tuple]:
            for index in range(count):
                r = random_()
                role = "admin" if r < 0.005 else ("staff" if r < 0.03 else "user")
                first = choice(FIRST_NAMES)
                last = choice(LAST_NAMES)
                when = earliest + randrange(3 * 365 * DAY - DAY)
                joined[index] = when
                row = (
                    user_uuid_hex(index, offset),
                    f"!{getrandbits(160):040x}",  # an unusable password, as set_unusable_password() writes
                    null,
                    "1" if role == "admin" else "0",
                    f"{first.lower()}.{last.lower()}.{index + 1}{tag}@{choice(DOMAINS)}",
                    f"{first} {last}",
                    role,
                    "0" if random_() < 0.02 else "1",
                    "0" if role == "user" else "1",
                    _timestamp(when),
                )
                yield row + (permissions[role],) if head else row

        self._write("users", columns, rows(), count, "users")

    def _baseline_offers(self) -> list[tuple[str, list[_Offer]]]:
        return [
            (plan, [_Offer(plan, "default", "Default", self.null, cents, 0, 0, 0, 0, 0)])
            for plan, cents in BASELINE_PRICES_CENTS.items()
        ]

    def _pricing_offers(self) -> list[tuple[str, list[_Offer]]]:
        """Create the demo pricing configs that fit, then offer every config in effect at REFERENCE."""
        from billing.models import PricingConfig

        configs = PricingConfig.objects.using(self.using)
        created = []
        for plan, variant, variant_name, base, delivery, tax, disc, rules, ppu, start, until in DEMO_PRICING:
            effective_from = datetime.datetime(*start, tzinfo=datetime.UTC)
            effective_until = datetime.datetime(*until, tzinfo=datetime.UTC) if until else None
            clash = configs.filter(plan=plan, variant_id=variant, is_active=True).filter(
                Q(effective_until__isnull=True) | Q(effective_until__gt=effective_from)
            )
            if effective_until is not None:
                clash = clash.filter(effective_from__lt=effective_until)
            if clash.exists():
                continue
            config = configs.create(
                name=f"{DEMO_PRICING_PREFIX}{plan} {variant_name.lower()} from {effective_from:%Y-%m-%d}",
                plan=plan,
                variant_id=variant,
                variant_name=variant_name,
                base_price=Decimal(base),
                delivery_fee=Decimal(delivery),
                tax_rate=Decimal(tax),
                discount_rate=Decimal(disc),
                discount_rules=rules,
                loyalty_points_per_unit=Decimal(ppu),
                effective_from=effective_from,
                effective_until=effective_until,
                is_active=True,
            )
            created.append(config.pk)
        if created:  # auto_now(_add) stamped the clock; demo data is dated from REFERENCE instead
            stamp = datetime.datetime.fromtimestamp(REFERENCE - 400 * DAY, tz=datetime.UTC)
            configs.filter(pk__in=created).update(created_at=stamp, updated_at=stamp)
        self.report.counts["pricing_configs"] = len(created)
        now = datetime.datetime.fromtimestamp(REFERENCE, tz=datetime.UTC)
        in_effect = (
            configs.filter(is_active=True, effective_from__lte=now)
            .filter(Q(effective_until__isnull=True) | Q(effective_until__gt=now))
            .order_by("plan", "variant_id", "id")
        )
        by_plan: dict[str, list[_Offer]] = {}
        for c in in_effect:
            yearly = c.discount_rules.get("rate") if c.discount_rules.get("min_months", 0) <= 12 else None
            by_plan.setdefault(c.plan, []).append(
                _Offer(
                    c.plan,
                    c.variant_id,
                    c.variant_name or c.variant_id,
                    str(c.pk),
                    _cents(c.base_price),
                    _cents(c.delivery_fee),
                    _basis_points(c.tax_rate),
                    _basis_points(c.discount_rate),
                    _basis_points(yearly) if yearly else 0,
                    _cents(c.loyalty_points_per_unit),
                )
            )
        offers = [(plan, by_plan[plan]) for plan, _ in PLAN_WEIGHTS if plan in by_plan]
        if not offers:
            raise SeedRefused("no active pricing config is in effect: nothing to price subscriptions with")
        return offers

    def _subscriptions(self, users: int, total: int) -> None:
        """Subscriptions in user order and, at the head, each user's points ledger alongside."""
        rng = self.rng
        head = self.head
        null = self.null
        random_ = rng.random
        randrange = rng.randrange
        choice = rng.choice
        offset = self.uuid_offset
        subs_per_user = self.subs_per_user
        joined = self.joined
        balances, lifetime = self.balances, self.lifetime
        account_base = self.account_base
        plans = self.offers
        weights = dict(PLAN_WEIGHTS)
        plan_total = sum(weights[plan] for plan, _ in plans)
        cumulative = []
        running = 0.0
        for plan, offers in plans:
            running += weights[plan] / plan_total
            cumulative.append((running, offers))
        cumulative[-1] = (1.0, cumulative[-1][1])

        sub_id = self.next_ids["subscriptions"]
        self.first_subscription_id = sub_id
        tx_id = self.next_ids["points_transactions"] if head else 0
        # Per subscription, for the payment-intent phase and the analytics.
        self.sub_user = array("l", bytes(8 * total))
        self.sub_total = array("l", bytes(8 * total))
        self.sub_started = array("q", bytes(8 * total))
        transactions: list[tuple] = []
        self.transactions_written = 0
        analytics = _SubscriptionDays(self.days_window) if head else None
        columns = HEAD_SUBSCRIPTION_COLUMNS if head else BASELINE_SUBSCRIPTION_COLUMNS

        def flush_transactions() -> None:
            self.writer.write("points_transactions", TRANSACTION_COLUMNS, transactions)
            self.transactions_written += len(transactions)
            transactions.clear()

        def rows() -> Iterator[tuple]:
            nonlocal sub_id, tx_id
            position = 0
            for user in range(users):
                count = subs_per_user[user]
                balance = 0
                earned = 0
                account = str(account_base + user) if head else ""
                when = joined[user]
                if head and random_() < 0.3:
                    balance = earned = WELCOME_BONUS
                    transactions.append(
                        (
                            str(tx_id),
                            account,
                            str(WELCOME_BONUS),
                            "earn",
                            null,
                            null,
                            str(balance),
                            "welcome bonus",
                            _timestamp(when),
                        )
                    )
                    tx_id += 1
                if not count and not head:
                    continue
                user_id = user_uuid_hex(user, offset)
                for _ in range(count):
                    when = min(when + randrange(DAY, 120 * DAY), REFERENCE - randrange(1, 3600))
                    r = random_()
                    for threshold, offers in cumulative:  # noqa: B007 - the chosen row is used after break
                        if r < threshold:
                            break
                    offer = choice(offers)
                    r = random_()
                    for status, threshold in STATUSES:  # noqa: B007
                        if r < threshold:
                            break
                    yearly = random_() < 0.2
                    months = 12 if yearly else 1
                    cancelled_at = null
                    if status == "cancelled":
                        ended = min(when + randrange(DAY, 400 * DAY), REFERENCE - 1)
                        cancelled_at = _timestamp(ended)
                    base = offer.base * months
                    discount = _half_up(
                        base * min(offer.discount_bp + (offer.yearly_extra_bp if yearly else 0), 10_000), 10_000
                    )
                    started_at = _timestamp(when)
                    row = (str(sub_id), user_id, offer.plan, status)
                    if head:
                        frequency = "weekly" if (f := random_()) < 0.3 else ("biweekly" if f < 0.6 else "monthly")
                        delivery = offer.delivery * DELIVERIES_PER_MONTH[frequency] * months
                        tax = _half_up((base + delivery - discount) * offer.tax_bp, 10_000)
                        subtotal = base + delivery + tax - discount
                        loyalty = 0
                        if balance >= 100 and random_() < 0.5:
                            loyalty = min(balance, 500, subtotal) // 100 * 100  # 1 point = 1 cent
                            if loyalty:
                                balance -= loyalty
                                transactions.append(
                                    (
                                        str(tx_id),
                                        account,
                                        str(-loyalty),
                                        "redeem",
                                        str(sub_id),
                                        null,
                                        str(balance),
                                        "redeemed at checkout",
                                        started_at,
                                    )
                                )
                                tx_id += 1
                        total_cents = subtotal - loyalty
                        points = 0 if status == "past_due" else total_cents * offer.points_per_unit_cents // 10_000
                        if points:
                            balance += points
                            earned += points
                            transactions.append(
                                (
                                    str(tx_id),
                                    account,
                                    str(points),
                                    "earn",
                                    str(sub_id),
                                    null,
                                    str(balance),
                                    "subscription payment",
                                    started_at,
                                )
                            )
                            tx_id += 1
                        next_delivery = null
                        if status == "active":
                            next_delivery = _date(REFERENCE + randrange(0, 28) * DAY)
                        line1 = f"{randrange(1, 9999)} {choice(STREETS)}"
                        city = choice(CITIES)
                        address = (
                            f'{{"line1": "{line1}", "city": "{city}", '
                            f'"postal_code": "{randrange(1000, 99999):05d}", "country": "US"}}'
                        )
                        row += (
                            _money(total_cents),
                            "USD",
                            "year" if yearly else "month",
                            started_at,
                            cancelled_at,
                            started_at,
                            started_at,
                            offer.variant_id,
                            offer.variant_name,
                            offer.config_id,
                            _money(base),
                            _money(delivery),
                            _money(tax),
                            _money(discount),
                            _money(loyalty),
                            _money(total_cents),
                            frequency,
                            next_delivery,
                            address,
                            account,
                            str(points),
                        )
                        analytics.add(when, ended if status == "cancelled" else None, status, total_cents // months)
                    else:
                        total_cents = base - discount
                        row += (
                            _money(total_cents),
                            "USD",
                            "year" if yearly else "month",
                            started_at,
                            cancelled_at,
                            started_at,
                            started_at,
                        )
                    self.sub_user[position] = user
                    self.sub_total[position] = total_cents
                    self.sub_started[position] = when
                    position += 1
                    sub_id += 1
                    yield row
                if head:
                    if balance > 0 and random_() < 0.05:
                        expired = -randrange(1, balance + 1)
                        balance += expired
                        transactions.append(
                            (
                                str(tx_id),
                                account,
                                str(expired),
                                "expire",
                                null,
                                null,
                                str(balance),
                                "points expired",
                                _timestamp(REFERENCE - randrange(1, DAY)),
                            )
                        )
                        tx_id += 1
                    balances[user] = balance
                    lifetime[user] = earned
                    if len(transactions) >= self.batch_size:
                        flush_transactions()

        self._write("subscriptions", columns, rows(), total, "subscriptions")
        if head:
            flush_transactions()
            self.subscription_days = analytics

    def _payment_intents(self, count: int, days: int) -> None:
        """Payment intents of random subscriptions (amount = the subscription's total, in cents)."""
        rng = self.rng
        null = self.null
        random_ = rng.random
        randrange = rng.randrange
        getrandbits = rng.getrandbits
        offset = self.uuid_offset
        subs = len(self.sub_user)
        first_sub = self.first_subscription_id
        pi_id = self.next_ids["payment_intents"]
        self.payment_days = _PaymentDays(self.days_window)
        if count and not subs:
            raise SeedRefused("payment intents need subscriptions: pass --subscriptions as well")

        def rows() -> Iterator[tuple]:
            nonlocal pi_id
            for _ in range(count):
                position = randrange(subs)
                amount = self.sub_total[position]
                created = min(self.sub_started[position] + randrange(0, 60 * DAY), REFERENCE - randrange(1, 3600))
                r = random_()
                for status, threshold, code, message in PAYMENT_OUTCOMES:  # noqa: B007
                    if r < threshold:
                        break
                succeeded = status == "succeeded"
                created_at = _timestamp(created)
                finished_at = _timestamp(created + randrange(1, 120))
                self.payment_days.add(created, amount, succeeded, bool(code))
                yield (
                    str(pi_id),
                    f"pi_{pi_id:x}{getrandbits(80):020x}",  # unique by construction: the id is part of it
                    str(first_sub + position),
                    user_uuid_hex(self.sub_user[position], offset),
                    str(amount),
                    str(amount) if succeeded else "0",
                    "usd",
                    status,
                    code,
                    message,
                    '{"source": "seed_demo_data"}',
                    f"evt_{getrandbits(96):024x}",
                    finished_at,
                    created_at,
                    finished_at,
                    finished_at if succeeded else null,
                )
                pi_id += 1

        self._write("payment_intents", PAYMENT_INTENT_COLUMNS, rows(), count, "payment_intents")

    def _accounts(self, users: int) -> None:
        """One loyalty account per generated user, holding the balance its ledger sums to."""
        thresholds = sorted((minimum, tier) for tier, minimum in settings.LOYALTY_TIER_THRESHOLDS.items())
        offset = self.uuid_offset
        base = self.account_base
        stamp = _timestamp(REFERENCE)

        def rows() -> Iterator[tuple]:
            for user in range(users):
                lifetime = self.lifetime[user]
                yield (
                    str(base + user),
                    user_uuid_hex(user, offset),
                    str(self.balances[user]),
                    str(lifetime),
                    _tier(lifetime, thresholds),
                    _timestamp(self.joined[user]),
                    stamp,
                )

        self._write("loyalty_accounts", ACCOUNT_COLUMNS, rows(), users, "loyalty_accounts")

    def _analytics(self, days: int) -> int:
        """Daily rows for the window's dates that have none yet (both tables)."""
        stamp = _timestamp(REFERENCE)
        written = 0
        # Queries of this thread wait until the writer's thread is idle: one connection, one user
        # at a time (a query interleaved with a COPY in flight would hang both).
        self.writer.sync()
        tables = (
            ("subscription_analytics", SUBSCRIPTION_ANALYTICS_COLUMNS, self.subscription_days),
            ("payment_analytics", PAYMENT_ANALYTICS_COLUMNS, self.payment_days),
        )
        taken: dict[str, set[str]] = {}
        with self.connection.cursor() as cursor:
            for table, _columns, _source in tables:
                cursor.execute(f"SELECT date FROM {table} WHERE date >= %s", [_date(REFERENCE - days * DAY)])
                taken[table] = {str(row[0]) for row in cursor.fetchall()}
        for table, columns, source in tables:
            rows = [row + (stamp,) for row in source.rows() if row[0] not in taken[table]]
            self.writer.write(table, columns, rows)
            written = max(written, len(rows))
        return written


class _SubscriptionDays:
    """Per-day subscription metrics of the last `days` days before REFERENCE, from deltas."""

    def __init__(self, days: int) -> None:
        self.days = days
        self.start = REFERENCE - days * DAY
        self.live_delta = [0] * (days + 1)  # index 0: before the window
        self.paused_delta = [0] * (days + 1)
        self.mrr_delta = [0] * (days + 1)
        self.new = [0] * (days + 1)
        self.cancelled = [0] * (days + 1)

    def _slot(self, epoch: int) -> int:
        return 0 if epoch < self.start else 1 + (epoch - self.start) // DAY

    def add(self, started: int, ended: int | None, status: str, monthly_cents: int) -> None:
        slot = self._slot(started)
        self.new[slot] += 1
        if status == "paused":
            self.paused_delta[slot] += 1
            return
        self.live_delta[slot] += 1
        self.mrr_delta[slot] += monthly_cents
        if ended is not None:
            end = self._slot(ended)
            self.live_delta[end] -= 1
            self.mrr_delta[end] -= monthly_cents
            self.cancelled[end] += 1

    def rows(self) -> list[tuple]:
        rows = []
        live, paused, mrr = self.live_delta[0], self.paused_delta[0], self.mrr_delta[0]
        for day in range(1, self.days + 1):
            before = live
            live += self.live_delta[day]
            paused += self.paused_delta[day]
            mrr += self.mrr_delta[day]
            churn = min(self.cancelled[day] / before, 1.0) if before else 0.0
            rows.append(
                (
                    _date(self.start + (day - 1) * DAY),
                    str(live),
                    str(self.new[day]),
                    str(self.cancelled[day]),
                    str(paused),
                    _money(max(mrr, 0)),
                    f"{churn:.6f}",
                )
            )
        return rows


class _PaymentDays:
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

    def rows(self) -> list[tuple]:
        rows = []
        for index, (total, succeeded, failed, volume, received) in enumerate(self.counts):
            rate = succeeded / total if total else 0.0
            rows.append(
                (
                    _date(self.start + index * DAY),
                    str(total),
                    str(succeeded),
                    str(failed),
                    str(volume),
                    str(received),
                    f"{rate:.6f}",
                )
            )
        return rows
