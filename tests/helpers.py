"""Helpers the test modules share: state to compare, data to seed, runs to start, servers to wait for.

Test modules import these from here, never from one another. Shared fixtures are in tests/conftest.py;
scratch databases and `manage.py` subprocesses in tests/dbs.py; the fault-injection harness of the
reliability tests in tests/reliability/harness.py.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import socket
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest
from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from migrations_ops.api import safe_migrate
from migrations_ops.engines import get_engine
from migrations_ops.fingerprint import table_checksums
from migrations_ops.options import SafeMigrateOptions
from migrations_ops.pipeline import MigrationSummary
from migrations_ops.status import BOOKKEEPING_TABLES
from tests.dbs import ROOT, manage_env, run_manage

# The schema production ran before the upgrade: accounts 0001 and billing 0001.
BASELINE = [("accounts", "0001_initial"), ("billing", "0001_initial")]

# The users and subscriptions in the online tests' seeded baseline (conftest's seeded_baseline).
SEEDED_USERS = SEEDED_SUBSCRIPTIONS = 2000


# ---------------------------------------------------------------- settings


def with_apps(settings, *labels: str) -> None:
    """Install the test migration apps ``labels`` (tests/migration_apps) for this test."""
    settings.INSTALLED_APPS = [
        *settings.INSTALLED_APPS,
        *(f"tests.migration_apps.{label}.apps.Config" for label in labels),
    ]


# ---------------------------------------------------------------- the state of a database


def fingerprint(db) -> dict:
    """Schema (tables, columns, constraints) and content checksum of every table."""
    connection = connections[db.alias]
    schema = {}
    with connection.cursor() as cursor:
        for table in sorted(connection.introspection.table_names(cursor)):
            columns = [(c.name, c.null_ok) for c in connection.introspection.get_table_description(cursor, table)]
            constraints = sorted(connection.introspection.get_constraints(cursor, table))
            schema[table] = (columns, constraints)
    content = table_checksums(using=db.alias)
    # The record of the run itself is written after the outcome, on purpose (see records.py).
    content.pop("migrations_ops_migrationrun", None)
    return {"schema": schema, "content": content}


def content_checksums(db) -> dict[str, str]:
    """sha256 of every table's rows (order-independent), keyed by table name."""
    connections[db.alias].close()
    engine = get_engine(db.alias)
    qn = connections[db.alias].ops.quote_name
    sums = {}
    for table in engine.table_names():
        rows = sorted(repr(row) for row in db.query(f"SELECT * FROM {qn(table)}"))
        sums[table] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
    return sums


def pg_schema(db) -> dict:
    """Columns (type, null, default), constraints and indexes (and their validity) of every app table (PostgreSQL)."""
    rows = db.query(
        """
        SELECT c.relname, 'column ' || a.attname, format_type(a.atttypid, a.atttypmod) || ' null=' || (NOT a.attnotnull)
               || ' default=' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
        FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
        UNION ALL
        SELECT c.relname, 'constraint ' || k.conname, pg_get_constraintdef(k.oid) || ' valid=' || k.convalidated
        FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'public'
        UNION ALL
        SELECT c.relname, 'index ' || i.relname, pg_get_indexdef(i.oid) || ' valid=' || x.indisvalid
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c ON c.oid = x.indrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
        """
    )
    return {(table, what): definition for table, what, definition in rows if table not in BOOKKEEPING_TABLES}


def applied_migrations(db) -> set[tuple[str, str]]:
    """The (app, name) of every migration django_migrations records as applied."""
    return set(db.query("SELECT app, name FROM django_migrations"))


def column_names(db, table: str) -> list[str]:
    """The columns of ``table`` in their order in the table (information_schema, PostgreSQL)."""
    return [
        row[0]
        for row in db.query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s ORDER BY ordinal_position",
            [table],
        )
    ]


def subscription_rows(db) -> list[tuple]:
    """Every subscription with its loyalty account named by the account's user (account ids are surrogates)."""
    columns = [c for c in column_names(db, "subscriptions") if c != "loyalty_account_id"]
    select = ", ".join(f"s.{c}" for c in columns)
    return db.query(
        f"SELECT {select}, la.user_id FROM subscriptions s "
        "LEFT JOIN loyalty_accounts la ON la.id = s.loyalty_account_id ORDER BY s.id"
    )


# ---------------------------------------------------------------- data


def historical_apps(db, targets):
    """The app registry as of the migrations ``targets`` (models as those migrations left them)."""
    executor = MigrationExecutor(db.connection)
    return executor.loader.project_state(targets, at_end=True).apps


def seed_baseline(db) -> dict:
    """Three users (admin, staff, user) and three subscriptions, written with the baseline's models."""
    apps = historical_apps(db, BASELINE)
    User = apps.get_model("accounts", "User")
    Subscription = apps.get_model("billing", "Subscription")
    users = {
        role: User.objects.using(db.alias).create(id=uuid.uuid4(), email=f"{role}@example.com", role=role, password="!")
        for role in ("admin", "staff", "user")
    }
    prices = [Decimal("9.99"), Decimal("19.99"), Decimal("120.00")]
    for i, price in enumerate(prices):
        Subscription.objects.using(db.alias).create(
            user=users["user"] if i < 2 else users["admin"],
            plan=["basic", "standard", "premium"][i],
            status="active" if i else "cancelled",
            price=price,
            billing_interval="year" if i == 2 else "month",
        )
    return {"users": users, "prices": prices}


def seed_consistent_data(db) -> dict:
    """A small, consistent data set touching every invariant (on a database migrated to the head)."""
    from accounts.models import User
    from analytics.models import PaymentAnalytics, SubscriptionAnalytics
    from billing.models import PaymentIntent, PricingConfig, Subscription
    from loyalty.models import LoyaltyAccount, PointsTransaction

    utc = dt.UTC
    a = db.alias
    users = [
        User.objects.db_manager(a).create_user(f"user{i}@example.com", password=None, role=role)
        for i, role in enumerate(["admin", "staff", "user"])
    ]
    accounts = [LoyaltyAccount.objects.using(a).create(user=user) for user in users]
    subscriptions = [
        Subscription.objects.using(a).create(
            user=users[i],
            plan="basic",
            price=Decimal("12.00"),
            base_cost=Decimal("10.00"),
            delivery_cost=Decimal("2.00"),
            tax_amount=Decimal("1.10"),
            discount_amount=Decimal("0.70"),
            loyalty_discount=Decimal("0.40"),
            total_cost=Decimal("12.00"),
            loyalty_account=accounts[i],
        )
        for i in range(3)
    ]
    intent = PaymentIntent.objects.using(a).create(
        stripe_payment_intent_id="pi_1", subscription=subscriptions[0], user=users[0], amount=1200, status="succeeded"
    )
    # Two consecutive windows of one variant: half-open, so touching is not overlapping.
    for start, end in [(dt.datetime(2024, 1, 1, tzinfo=utc), dt.datetime(2024, 6, 1, tzinfo=utc))]:
        PricingConfig.objects.using(a).create(
            name="large H1", plan="basic", variant_id="large", base_price=20, effective_from=start, effective_until=end
        )
    PricingConfig.objects.using(a).create(
        name="large H2",
        plan="basic",
        variant_id="large",
        base_price=22,
        effective_from=dt.datetime(2024, 6, 1, tzinfo=utc),
    )
    ledger = {accounts[0]: [100, -30, 5], accounts[1]: [50]}
    transactions = []
    for account, entries in ledger.items():
        balance = 0
        for points in entries:
            balance += points
            kind = "earn" if points > 0 else "redeem"
            transactions.append(
                PointsTransaction.objects.using(a).create(
                    account=account, points=points, kind=kind, balance_after=balance, payment_intent=intent
                )
            )
        account.points_balance = account.lifetime_points = balance
        account.save(using=a)
    for day in (dt.date(2024, 1, 1), dt.date(2024, 1, 2)):
        SubscriptionAnalytics.objects.using(a).create(date=day, active_subscriptions=3)
        PaymentAnalytics.objects.using(a).create(date=day, total_payments=1)
    return {"users": users, "accounts": accounts, "subscriptions": subscriptions, "transactions": transactions}


def add_customer(db, email: str = "c@example.com", price: str = "9.99") -> None:
    """One user with one basic subscription at ``price`` (a database migrated to the head)."""
    from accounts.models import User
    from billing.models import Subscription

    user = User.objects.db_manager(db.alias).create_user(email=email, password="x-secret-x")
    Subscription.objects.using(db.alias).create(
        user=user,
        plan="basic",
        price=Decimal(price),
        base_cost=Decimal(price),
        delivery_cost=0,
        tax_amount=0,
        discount_amount=0,
        loyalty_discount=0,
        total_cost=Decimal(price),
    )


def add_users(db, count: int = 3, prefix: str = "user") -> None:
    """``count`` users, ``<prefix><n>@example.com`` (a database migrated to the head)."""
    from accounts.models import User

    for index in range(count):
        User.objects.db_manager(db.alias).create_user(email=f"{prefix}{index}@example.com", password="pw")


# ---------------------------------------------------------------- backups


def corrupt(path: Path, how: str) -> None:
    """Damage a backup's data file: ``flip`` one bit in the middle, or (any other ``how``) truncate it in half."""
    data = bytearray(path.read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0x01
    else:
        data = data[: len(data) // 2]
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------- validation reports


def failing_checks(report) -> set[str]:
    """The names of the report's failed checks."""
    return {result.name for result in report.failures()}


def check_result(report, name: str):
    """The report's one result of the check ``name``."""
    (found,) = [r for r in report.checks if r.name == name]
    return found


# ---------------------------------------------------------------- safe_migrate in this process


def run_safe_migrate(db, **options) -> MigrationSummary:
    """safe_migrate on ``db`` with SafeMigrateOptions(**options), in this process."""
    return safe_migrate(db.alias, SafeMigrateOptions(**options))


def run_online(db, **options) -> MigrationSummary:
    """safe_migrate --online on ``db`` with the further SafeMigrateOptions ``options``, in this process."""
    return safe_migrate(db.alias, SafeMigrateOptions(online=True, **options))


def backfill_reached(db, revision: str) -> bool:
    """The newest online run's checkpoint is inside ``revision``'s batched walk (read by another session)."""
    watcher = psycopg2.connect(db.url.replace("postgres://", "postgresql://"))
    watcher.autocommit = True
    try:
        with watcher.cursor() as cursor:
            cursor.execute("SELECT to_regclass('migrations_ops_online_run') IS NOT NULL")
            if not cursor.fetchone()[0]:
                return False
            cursor.execute("SELECT state->'current' FROM migrations_ops_online_run ORDER BY id DESC LIMIT 1")
            current = (cursor.fetchone() or [None])[0] or {}
    finally:
        watcher.close()
    return current.get("revision") == revision and bool(current.get("block"))


# ---------------------------------------------------------------- manage.py in a subprocess


def manage_with_test_settings(
    db, *args: str, env: dict | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``manage.py <args>`` on ``db`` under tests.settings_subprocess (TEST_MIGRATION_APPS etc. in ``env``)."""
    return run_manage(db.url, *args, env=manage_env(**(env or {})), timeout=timeout)


def manage_with_project_settings(db, *args: str) -> subprocess.CompletedProcess:
    """``manage.py <args>`` on ``db`` under the project's own settings (config.settings)."""
    return run_manage(db.url, *args, env=manage_env("config.settings"))


def manage_in_env(
    env: dict[str, str], *args: str, url: str | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """``manage.py <args>`` with exactly ``env`` (e.g. the backup_env fixture), on ``url`` if given, fed ``stdin``."""
    argv = [sys.executable, "manage.py", *args]
    if url:
        argv += ["--database-url", url]
    return subprocess.run(argv, cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------- servers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening(port: int) -> bool:
    """Something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def wait_until_listening(process: subprocess.Popen, port: int, timeout: float = 120) -> None:
    """Wait for ``process`` to listen on ``port``; fail the test (with its output) if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"serve exited {process.returncode} before listening:\n{out}\n{err}")
        if listening(port):
            return
        time.sleep(0.2)
    process.kill()
    out, err = process.communicate()
    pytest.fail(f"nothing listened on {port} within {timeout}s:\n{out}\n{err}")


def serving_env(tmp_path: Path, settings_module: str = "tests.settings_subprocess", **variables: str) -> dict[str, str]:
    """A manage.py child's environment with backups, the audit log and STATIC_ROOT under tmp_path."""
    return manage_env(
        settings_module,
        BACKUP_DIR=str(tmp_path / "backups"),
        MIGRATION_LOG=str(tmp_path / "log" / "migration.log"),
        STATIC_ROOT=str(tmp_path / "static"),
        **variables,
    )


def write_app(root: Path, label: str, migrations: dict[str, str]) -> Path:
    """A throwaway app package ``label`` under ``root`` (put ``root`` on sys.path): its migrations
    package holds ``migrations`` ({file name: source}); returns the package's folder."""
    package = root / label
    (package / "migrations").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "migrations" / "__init__.py").write_text("")
    for name, source in migrations.items():
        (package / "migrations" / name).write_text(source)
    return package
