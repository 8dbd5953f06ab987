"""seed_demo_data: counts, the invariants validate_db checks, determinism, the baseline mode, refusals."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from billing.models import Subscription
from loyalty.models import PointsTransaction
from seeding import SeedRefused, seed
from tests.dbs import scratch as _scratch

ROOT = Path(__file__).resolve().parent.parent
USERS, SUBSCRIPTIONS, INTENTS, DAYS = 120, 200, 150, 14


@pytest.fixture
def other_migrated_db(request, engine):
    """A second fresh head database of the same engine (for determinism)."""
    return _scratch(request, engine, "head")


def seed_small(db, **options):
    defaults = {"users": USERS, "subscriptions": SUBSCRIPTIONS, "payment_intents": INTENTS, "days": DAYS, "seed": 7}
    return seed(**{**defaults, **options}, batch_size=50, using=db.alias)


def digest(db) -> str:
    """Content of users' emails and roles and subscriptions' prices, read back through the ORM."""
    users = list(User.objects.using(db.alias).order_by("email").values_list("email", "role", "date_joined"))
    subs = list(
        Subscription.objects.using(db.alias)
        .order_by("id")
        .values_list("id", "user__email", "plan", "status", "price", "total_cost", "variant_id")
    )
    return hashlib.sha256(repr((users, subs)).encode()).hexdigest()


def test_head_counts_and_shape(migrated_db):
    report = seed_small(migrated_db)
    db = migrated_db
    assert report.state == "head"
    assert db.scalar("SELECT COUNT(*) FROM users") == USERS
    assert db.scalar("SELECT COUNT(*) FROM subscriptions") == SUBSCRIPTIONS
    assert db.scalar("SELECT COUNT(*) FROM payment_intents") == INTENTS
    assert db.scalar("SELECT COUNT(*) FROM loyalty_accounts") == USERS
    assert db.scalar("SELECT COUNT(*) FROM points_transactions") == report.counts["points_transactions"] > 0
    assert db.scalar("SELECT COUNT(DISTINCT email) FROM users") == USERS
    roles = dict(db.query("SELECT role, COUNT(*) FROM users GROUP BY role"))
    assert roles["user"] >= 0.9 * USERS and USERS - roles["user"] >= 1
    assert {r[0] for r in db.query("SELECT DISTINCT plan FROM subscriptions")} == {"basic", "standard", "premium"}
    statuses = {r[0] for r in db.query("SELECT DISTINCT status FROM subscriptions")}
    assert statuses == {"active", "paused", "past_due", "cancelled"}
    assert db.scalar("SELECT COUNT(*) FROM subscriptions WHERE status = 'cancelled' AND cancelled_at IS NULL") == 0
    # Rows read back through Django: UUIDs in the engine's own format, unusable passwords.
    user = User.objects.using(db.alias).order_by("email").first()
    assert not user.has_usable_password()
    assert user.permissions == {"admin": user.role == "admin", "manage_users": user.role != "user"}
    sub = Subscription.objects.using(db.alias).select_related("user", "loyalty_account").order_by("id").first()
    assert sub.loyalty_account.user_id == sub.user_id
    # The sequences were moved past the assigned ids: the ORM can insert next.
    created = Subscription.objects.using(db.alias).create(user=user, plan="basic", price=1)
    assert created.pk == SUBSCRIPTIONS + 1


def test_head_invariants_hold(migrated_db):
    seed_small(migrated_db)
    db = migrated_db
    # Cost breakdown adds up (SQLite stores decimals as REAL: compare to within a tenth of a cent).
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM subscriptions WHERE total_cost IS NULL OR ABS(total_cost - "
            "(base_cost + delivery_cost + tax_amount - discount_amount - loyalty_discount)) > 0.001 "
            "OR ABS(price - total_cost) > 0.001 OR base_cost < 0 OR delivery_cost < 0 OR tax_amount < 0 "
            "OR discount_amount < 0 OR loyalty_discount < 0 OR total_cost < 0"
        )
        == 0
    )
    assert db.scalar("SELECT COUNT(*) FROM subscriptions WHERE loyalty_discount > 0") > 0
    assert db.scalar("SELECT COUNT(*) FROM subscriptions WHERE delivery_cost > 0 AND tax_amount > 0") > 0
    # Every subscription is priced by an active config of its own plan and variant.
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM subscriptions s LEFT JOIN pricing_configs p ON p.id = s.pricing_config_id "
            "WHERE p.id IS NULL OR p.plan <> s.plan OR p.variant_id <> s.variant_id OR NOT p.is_active"
        )
        == 0
    )
    # One loyalty account per user; balances are the sums of their ledgers.
    assert (
        db.scalar("SELECT COUNT(*) FROM users u LEFT JOIN loyalty_accounts a ON a.user_id = u.id WHERE a.id IS NULL")
        == 0
    )
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM loyalty_accounts a WHERE a.points_balance <> "
            "COALESCE((SELECT SUM(points) FROM points_transactions t WHERE t.account_id = a.id), 0) "
            "OR a.lifetime_points <> COALESCE((SELECT SUM(points) FROM points_transactions t "
            "WHERE t.account_id = a.id AND t.kind = 'earn'), 0)"
        )
        == 0
    )
    # balance_after is the running sum in id order, never negative; signs match kinds.
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM (SELECT balance_after, SUM(points) OVER "
            "(PARTITION BY account_id ORDER BY id) AS running FROM points_transactions) x "
            "WHERE balance_after <> running OR balance_after < 0"
        )
        == 0
    )
    kinds = {
        k: (low, high)
        for k, low, high in db.query("SELECT kind, MIN(points), MAX(points) FROM points_transactions GROUP BY kind")
    }
    assert kinds["earn"][0] > 0 and kinds["redeem"][1] < 0
    assert db.scalar("SELECT COUNT(*) FROM points_transactions WHERE kind IN ('redeem', 'expire') AND points >= 0") == 0
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM subscriptions s JOIN loyalty_accounts a ON a.id = s.loyalty_account_id "
            "WHERE a.user_id <> s.user_id"
        )
        == 0
    )
    # Payment intents: unique Stripe ids, the subscription's user and total.
    assert db.scalar("SELECT COUNT(DISTINCT stripe_payment_intent_id) FROM payment_intents") == INTENTS
    assert db.scalar("SELECT COUNT(*) FROM payment_intents WHERE SUBSTR(stripe_payment_intent_id, 1, 3) <> 'pi_'") == 0
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM payment_intents p JOIN subscriptions s ON s.id = p.subscription_id "
            "WHERE p.user_id <> s.user_id OR p.amount <> ROUND(s.total_cost * 100) "
            "OR (p.status = 'succeeded' AND p.amount_received <> p.amount) "
            "OR (p.status <> 'succeeded' AND p.amount_received <> 0)"
        )
        == 0
    )
    assert db.scalar("SELECT COUNT(*) FROM payment_intents WHERE subscription_id IS NULL") == 0
    # No two active pricing configs of one plan and variant overlap (half-open windows).
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM pricing_configs a JOIN pricing_configs b ON a.plan = b.plan "
            "AND a.variant_id = b.variant_id AND a.id < b.id AND a.is_active AND b.is_active "
            "WHERE (a.effective_until IS NULL OR a.effective_until > b.effective_from) "
            "AND (b.effective_until IS NULL OR b.effective_until > a.effective_from)"
        )
        == 0
    )
    assert db.scalar("SELECT COUNT(*) FROM pricing_configs WHERE SUBSTR(name, 1, 17) = 'Default pricing: '") == 3
    # Analytics: one row per date, within their ranges.
    for table in ("subscription_analytics", "payment_analytics"):
        assert (
            db.scalar(f"SELECT COUNT(DISTINCT date) FROM {table}") == db.scalar(f"SELECT COUNT(*) FROM {table}") == DAYS
        )
    assert db.scalar("SELECT COUNT(*) FROM subscription_analytics WHERE churn_rate < 0 OR churn_rate > 1") == 0
    assert db.scalar("SELECT SUM(total_payments) FROM payment_analytics") > 0


def test_same_seed_same_data_other_seed_other_data(migrated_db, other_migrated_db):
    seed_small(migrated_db)
    seed_small(other_migrated_db)
    assert digest(migrated_db) == digest(other_migrated_db)
    first_ledger = migrated_db.query(
        "SELECT account_id, points, kind, balance_after FROM points_transactions ORDER BY id"
    )
    assert first_ledger == other_migrated_db.query(
        "SELECT account_id, points, kind, balance_after FROM points_transactions ORDER BY id"
    )
    third = seed_small(migrated_db, seed=8, append=True)
    assert third.counts["users"] == USERS
    assert digest(migrated_db) != digest(other_migrated_db)


def test_append_adds_users_with_fresh_emails_and_keeps_invariants(migrated_db):
    db = migrated_db
    seed_small(db)
    seed_small(db, append=True)  # the same seed again: emails must still not collide
    assert db.scalar("SELECT COUNT(DISTINCT email) FROM users") == 2 * USERS
    assert db.scalar("SELECT COUNT(*) FROM subscriptions") == 2 * SUBSCRIPTIONS
    assert db.scalar("SELECT COUNT(*) FROM loyalty_accounts") == 2 * USERS
    assert db.scalar("SELECT COUNT(DISTINCT id) FROM points_transactions") == db.scalar(
        "SELECT COUNT(*) FROM points_transactions"
    )
    # The demo pricing configs exist once; the second run reused them instead of overlapping.
    assert db.scalar("SELECT COUNT(*) FROM pricing_configs") == 7
    assert db.scalar("SELECT COUNT(*) FROM subscription_analytics") == DAYS
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM loyalty_accounts a WHERE a.points_balance <> "
            "COALESCE((SELECT SUM(points) FROM points_transactions t WHERE t.account_id = a.id), 0)"
        )
        == 0
    )


def test_baseline_seeds_users_and_baseline_subscriptions_then_upgrades(baseline_db):
    db = baseline_db
    report = seed_small(db)
    assert report.state == "baseline"
    assert set(report.counts) == {"users", "subscriptions"}
    assert db.scalar("SELECT COUNT(*) FROM users") == USERS
    assert db.scalar("SELECT COUNT(*) FROM subscriptions") == SUBSCRIPTIONS
    assert db.scalar("SELECT COUNT(*) FROM subscriptions WHERE price <= 0") == 0
    assert "loyalty_accounts" not in db.connection.introspection.table_names()
    prices = db.query("SELECT id, price FROM subscriptions ORDER BY id")
    db.migrate()  # the upgrade runs over the seeded baseline data
    assert db.scalar("SELECT COUNT(*) FROM loyalty_accounts") == USERS
    assert db.query("SELECT id, total_cost FROM subscriptions ORDER BY id") == prices
    assert db.scalar("SELECT COUNT(*) FROM users WHERE permissions IS NULL") == 0


def test_refuses_a_database_with_users_unless_append(migrated_db):
    seed_small(migrated_db)
    with pytest.raises(CommandError) as excinfo:
        call_command("seed_demo_data", users=5, subscriptions=5, database=migrated_db.alias, stdout=StringIO())
    assert excinfo.value.returncode == 2
    assert "--append" in str(excinfo.value)
    assert migrated_db.scalar("SELECT COUNT(*) FROM users") == USERS  # nothing written


@pytest.mark.parametrize(
    "options",
    [
        {"users": -1},
        {"subscriptions": -5},
        {"payment_intents": -1},
        {"days": -2},
        {"batch_size": 0},
        {"users": 0, "subscriptions": 3},
    ],
)
def test_bad_numbers_exit_2_and_write_nothing(migrated_db, options):
    with pytest.raises(CommandError) as excinfo:
        call_command("seed_demo_data", database=migrated_db.alias, stdout=StringIO(), **options)
    assert excinfo.value.returncode == 2
    assert migrated_db.scalar("SELECT COUNT(*) FROM users") == 0


def test_unmigrated_database_is_refused(empty_db):
    with pytest.raises(SeedRefused, match="migrate"):
        seed(users=1, subscriptions=1, using=empty_db.alias)


def test_command_prints_one_summary_line_and_no_progress_off_a_terminal(migrated_db, capsys):
    out = StringIO()
    call_command("seed_demo_data", users=30, subscriptions=40, days=3, seed=1, database=migrated_db.alias, stdout=out)
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("seeded head database:") and "users=30" in lines[0] and "subscriptions=40" in lines[0]
    assert capsys.readouterr().err == ""  # stderr is not a terminal under pytest


def test_negative_number_from_the_command_line_is_one_line_and_exit_2(tmp_path):
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'none.sqlite3'}", "DJANGO_SETTINGS_MODULE": ""}
    env.pop("DJANGO_SETTINGS_MODULE")
    result = subprocess.run(
        [sys.executable, "manage.py", "seed_demo_data", "--users", "-3"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: --users must not be negative (got -3)"]


# --- PostgreSQL bulk load: foreign keys and indexes dropped for the load, then re-created ------------

SCHEMA_SQL = """
SELECT 'constraint', conrelid::regclass::text, conname, pg_get_constraintdef(oid), convalidated::text
FROM pg_constraint WHERE connamespace = 'public'::regnamespace AND conrelid <> 0
UNION ALL
SELECT 'index', tablename, indexname, indexdef, '' FROM pg_indexes WHERE schemaname = 'public'
ORDER BY 1, 2, 3
"""
SEEDED_TABLES = ("users", "subscriptions", "payment_intents", "loyalty_accounts", "points_transactions")


def schema_objects(db) -> list[tuple]:
    return db.query(SCHEMA_SQL)


def foreign_keys_of_seeded_tables(db) -> int:
    return db.scalar(
        "SELECT COUNT(*) FROM pg_constraint WHERE contype = 'f' AND conrelid = ANY (%s::regclass[])",
        [list(SEEDED_TABLES)],
    )


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_constraints_and_indexes_are_back_after_seeding(migrated_db):
    db = migrated_db
    before = schema_objects(db)
    assert foreign_keys_of_seeded_tables(db) >= 8 and len(before) > 40
    report = seed_small(db)
    assert report.rebuilt == list(SEEDED_TABLES)
    assert schema_objects(db) == before  # same names, same definitions, still validated
    # and they are enforced again, with the seeded rows in place
    assert db.scalar("SELECT COUNT(*) FROM pg_index WHERE NOT indisvalid OR NOT indisready") == 0
    with pytest.raises(Exception, match="foreign key"):
        db.query(
            "INSERT INTO loyalty_accounts (user_id, points_balance, lifetime_points, tier, created_at, updated_at)"
            " VALUES (gen_random_uuid(), 0, 0, 'bronze', now(), now())"
        )


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_failure_midway_leaves_no_rows_and_every_constraint(migrated_db, monkeypatch):
    import seeding

    db = migrated_db
    before = schema_objects(db)
    total_fks = foreign_keys_of_seeded_tables(db)
    seen = {}

    def failing_accounts(self, users):
        # the load is under way: users and subscriptions written, their foreign keys dropped
        self.writer.sync()  # (the writer's thread is done with the connection)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM subscriptions")
            seen["subscriptions"] = cursor.fetchone()[0]
        seen["foreign_keys"] = foreign_keys_of_seeded_tables(db)
        raise RuntimeError("disk full, say")

    monkeypatch.setattr(seeding.Seeder, "_accounts", failing_accounts)
    with pytest.raises(RuntimeError, match="disk full"):
        seed_small(db)
    # those of complete tables are already back, those touching loyalty_accounts not yet
    assert seen["subscriptions"] == SUBSCRIPTIONS and seen["foreign_keys"] <= total_fks - 3
    for table in (*SEEDED_TABLES, "pricing_configs", "subscription_analytics"):
        assert db.scalar(f"SELECT COUNT(*) FROM {table}") == (3 if table == "pricing_configs" else 0), table
    assert schema_objects(db) == before


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_rows_breaking_a_dropped_foreign_key_roll_the_whole_seed_back(migrated_db, monkeypatch):
    import seeding

    db = migrated_db
    before = schema_objects(db)
    original = seeding.Seeder._accounts

    def accounts_and_an_orphan(self, users):
        original(self, users)
        self.writer.write(
            "points_transactions",
            seeding.seeded_columns(PointsTransaction, "head"),
            [("999999", "424242", "5", "earn", "\\N", "\\N", "5", "orphan", "2025-01-01 00:00:00")],
        )

    monkeypatch.setattr(seeding.Seeder, "_accounts", accounts_and_an_orphan)
    with pytest.raises(Exception, match="points_transactions"):
        seed_small(db)
    assert db.scalar("SELECT COUNT(*) FROM users") == db.scalar("SELECT COUNT(*) FROM points_transactions") == 0
    assert schema_objects(db) == before


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_a_table_much_bigger_than_the_load_keeps_its_constraints(migrated_db):
    db = migrated_db
    seed_small(db)
    before = schema_objects(db)
    report = seed(users=5, subscriptions=5, payment_intents=5, days=1, seed=3, append=True, using=db.alias)
    assert report.counts["users"] == 5
    assert report.rebuilt == []  # nothing dropped nor re-created
    assert schema_objects(db) == before


def test_seeded_costs_points_and_tiers_are_the_domain_rules(migrated_db):
    """Seeding asks the pricing engine and the ledger instead of re-implementing them: every seeded
    breakdown is compute_breakdown of its config, every earn of a subscription payment is
    points_for_amount of its total, every tier is tier_for of the lifetime points."""
    from billing.pricing import CostBreakdown, compute_breakdown
    from loyalty.ledger import points_for_amount, tier_for
    from loyalty.models import LoyaltyAccount

    using = migrated_db.alias
    seed_small(migrated_db)
    subs = Subscription.objects.using(using).select_related("pricing_config").order_by("id")
    assert subs.count() == SUBSCRIPTIONS
    for sub in subs:
        expected = compute_breakdown(
            sub.pricing_config,
            billing_interval=sub.billing_interval,
            delivery_frequency=sub.delivery_frequency,
            loyalty_discount=sub.loyalty_discount,
        )
        assert CostBreakdown.of(sub) == expected, sub.pk
        earned = (
            0
            if sub.status == "past_due"
            else points_for_amount(int(sub.total_cost * 100), sub.pricing_config.loyalty_points_per_unit)
        )
        assert sub.points_earned == earned, sub.pk
    accounts = list(LoyaltyAccount.objects.using(using).values_list("lifetime_points", "tier"))
    assert len(accounts) == USERS and len({tier for _, tier in accounts}) >= 2
    assert all(tier == tier_for(lifetime) for lifetime, tier in accounts)


def test_seeded_columns_are_the_models_limited_to_what_the_state_created():
    import seeding

    baseline = seeding.seeded_columns(Subscription, "baseline")
    head = seeding.seeded_columns(Subscription, "head")
    added = seeding.upgrade_schema()[1]["subscriptions"]
    assert set(head) - set(baseline) == added and len(added) == 14
    # in the model's field order, the order the phases generate values in
    order = [f.column for f in Subscription._meta.concrete_fields]
    assert list(head) == [c for c in order if c in head] and head[0] == "id"
    assert "permissions" in seeding.seeded_columns(User, "head")
    assert "permissions" not in seeding.seeded_columns(User, "baseline")


def test_seeded_analytics_are_what_the_rollup_computes_from_the_seeded_rows(migrated_db):
    """Seeding sums its analytics from the rows it generates instead of querying them; those sums must
    follow the rollup's definitions (MRR: the yearly totals of live subscriptions / 12, rounded half-up
    once; success rate over decided intents only), so recomputing the seeded days changes nothing."""
    from analytics.models import PaymentAnalytics, SubscriptionAnalytics
    from analytics.rollup import rollup

    using = migrated_db.alias
    # more intents than seed_small's: the window then holds declined, canceled and in-flight ones
    seed_small(migrated_db, payment_intents=1500)

    def tables() -> list[list[dict]]:
        return [
            list(model.objects.using(using).order_by("date").values(*fields))
            for model, fields in (
                (SubscriptionAnalytics, [f.name for f in SubscriptionAnalytics._meta.fields]),
                (PaymentAnalytics, [f.name for f in PaymentAnalytics._meta.fields]),
            )
        ]

    def metrics(rows: list[dict]) -> list[dict]:
        return [{k: v for k, v in row.items() if k not in ("id", "computed_at")} for row in rows]

    seeded = [metrics(rows) for rows in tables()]
    subscription_days, payment_days = seeded
    days = [row["date"] for row in subscription_days]
    assert len(days) == DAYS and days == [row["date"] for row in payment_days]
    # the data exercises every rule: yearly and monthly MRR, churn, declined and undecided intents
    assert migrated_db.scalar("SELECT COUNT(*) FROM subscriptions WHERE billing_interval = 'year'") > 0
    assert any(row["mrr"] > 0 for row in subscription_days)
    assert any(row["churn_rate"] > 0 for row in subscription_days)
    assert any(0 < row["success_rate"] < 1 for row in payment_days)
    assert any(row["succeeded_payments"] + row["failed_payments"] < row["total_payments"] for row in payment_days)

    rollup(days[0], days[-1], using=using)
    assert [metrics(rows) for rows in tables()] == seeded
