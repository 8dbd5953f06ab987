"""The migration history: baseline -> upgrade -> data migrations, and back, with data present."""

from __future__ import annotations

import hashlib
import json
from decimal import Decimal

import pytest
from django.core.management import call_command

from tests.helpers import seed_baseline

NEW_TABLES = {
    "pricing_configs",
    "subscription_cost_history",
    "payment_intents",
    "subscription_analytics",
    "payment_analytics",
    "loyalty_accounts",
    "points_transactions",
}
NEW_SUBSCRIPTION_COLUMNS = {
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
}


def tables(db) -> set[str]:
    return set(db.connection.introspection.table_names())


def columns(db, table: str) -> set[str]:
    with db.connection.cursor() as cursor:
        return {c.name for c in db.connection.introspection.get_table_description(cursor, table)}


def table_digest(db, table: str, order_by: str = "id") -> str:
    """A content checksum of a table's rows (every column, in key order)."""
    rows = db.query(f"SELECT * FROM {table} ORDER BY {order_by}")
    return hashlib.sha256(repr([tuple(str(v) for v in row) for row in rows]).encode()).hexdigest()


def migrate_to_baseline(db) -> None:
    db.migrate("loyalty:zero", "analytics:zero", "billing:0001_initial", "accounts:0001_initial")


def test_baseline_has_only_the_pre_upgrade_schema(baseline_db):
    assert {"users", "subscriptions"} <= tables(baseline_db)
    assert not NEW_TABLES & tables(baseline_db)
    assert "permissions" not in columns(baseline_db, "users")
    assert not NEW_SUBSCRIPTION_COLUMNS & columns(baseline_db, "subscriptions")


def test_upgrade_adds_seven_tables_and_fourteen_columns(baseline_db):
    before = columns(baseline_db, "subscriptions")
    baseline_db.migrate()
    assert tables(baseline_db) >= NEW_TABLES
    added = columns(baseline_db, "subscriptions") - before
    assert added == NEW_SUBSCRIPTION_COLUMNS
    assert len(added) == 14


def test_upgrade_backfills_existing_data(baseline_db):
    seeded = seed_baseline(baseline_db)
    baseline_db.migrate()
    db = baseline_db

    perms = dict(db.query("SELECT role, permissions FROM users ORDER BY role"))
    perms = {role: json.loads(p) if isinstance(p, str) else p for role, p in perms.items()}
    assert perms["admin"] == {"admin": True, "manage_users": True}
    assert perms["user"] == {"admin": False, "manage_users": False}
    assert perms["staff"] == {"admin": False, "manage_users": True}

    costs = db.query(
        "SELECT price, base_cost, delivery_cost, tax_amount, discount_amount, loyalty_discount, total_cost "
        "FROM subscriptions ORDER BY id"
    )
    assert [Decimal(str(r[0])) for r in costs] == seeded["prices"]
    for price, base, delivery, tax, discount, loyalty, total in costs:
        assert Decimal(str(base)) == Decimal(str(price)) == Decimal(str(total))
        assert Decimal(str(delivery)) == Decimal(str(tax)) == Decimal(str(discount)) == Decimal(str(loyalty)) == 0

    # One loyalty account per user, and every subscription linked to its owner's account.
    assert db.scalar("SELECT COUNT(*) FROM loyalty_accounts") == 3
    assert db.scalar("SELECT COUNT(DISTINCT user_id) FROM loyalty_accounts") == 3
    assert (
        db.scalar(
            "SELECT COUNT(*) FROM subscriptions s JOIN loyalty_accounts la ON la.id = s.loyalty_account_id "
            "AND la.user_id = s.user_id"
        )
        == 3
    )
    # The default pricing configuration: one active config per plan.
    configs = db.query("SELECT plan, base_price FROM pricing_configs WHERE is_active ORDER BY plan")
    assert [(plan, Decimal(str(price))) for plan, price in configs] == [
        ("basic", Decimal("9.99")),
        ("premium", Decimal("39.99")),
        ("standard", Decimal("19.99")),
    ]
    assert db.scalar("SELECT COUNT(*) FROM pricing_configs WHERE variant_id = 'default'") == 3


def test_downgrade_to_baseline_keeps_baseline_data(baseline_db):
    seed_baseline(baseline_db)
    db = baseline_db
    users_before = table_digest(db, "users", "email")
    subs_before = table_digest(db, "subscriptions")
    db.migrate()
    db.migrate("billing:0001_initial")  # reverse the data migrations and the upgrade in one go
    migrate_to_baseline(db)
    assert not NEW_TABLES & tables(db)
    assert table_digest(db, "users", "email") == users_before
    assert table_digest(db, "subscriptions") == subs_before


def test_reverse_derives_role_from_permissions(baseline_db):
    seed_baseline(baseline_db)
    db = baseline_db
    db.migrate()
    # After the upgrade an operator promotes the plain user through permissions only.
    db.query(
        "UPDATE users SET permissions = %s WHERE email = 'user@example.com'",
        ['{"admin": true, "manage_users": true}'],
    )
    db.migrate("accounts:0002_user_permissions")
    assert dict(db.query("SELECT email, role FROM users")) == {
        "admin@example.com": "admin",
        "staff@example.com": "staff",
        "user@example.com": "admin",
    }


def test_every_app_migrates_to_zero_and_back(migrated_db):
    db = migrated_db
    for app in ("loyalty", "analytics", "billing", "accounts"):
        call_command("migrate", app, "zero", database=db.alias, verbosity=0)
    assert not ({"users", "subscriptions"} | NEW_TABLES) & tables(db)
    db.migrate()
    assert ({"users", "subscriptions"} | NEW_TABLES) <= tables(db)
    # The data migration ran again: three default pricing configs, not six.
    assert db.scalar("SELECT COUNT(*) FROM pricing_configs") == 3


@pytest.mark.django_db
def test_no_model_change_lacks_a_migration():
    from io import StringIO

    out = StringIO()
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


@pytest.mark.parametrize("engine", ["postgresql"], indirect=True)
def test_postgres_refuses_overlapping_active_pricing(migrated_db):
    from django.db import IntegrityError, transaction

    db = migrated_db
    insert = (
        "INSERT INTO pricing_configs (name, plan, variant_id, variant_name, currency, base_price, delivery_fee,"
        " tax_rate, discount_rate, discount_rules, loyalty_points_per_unit, effective_from, effective_until,"
        " is_active, created_at, updated_at) VALUES (%s, 'basic', 'default', '', 'USD', 5, 0, 0, 0, '{}', 1,"
        " %s, %s, %s, now(), now())"
    )
    with pytest.raises(IntegrityError, match="pricing_configs_no_active_overlap"):
        with transaction.atomic(using=db.alias):
            db.query(insert, ["clash", "2030-01-01", None, True])
    # An inactive config may overlap; so may one of another variant.
    db.query(insert, ["draft", "2030-01-01", None, False])
    assert db.scalar("SELECT COUNT(*) FROM pricing_configs WHERE plan = 'basic'") == 2


def test_seeding_derives_the_upgrade_from_the_migration_graph():
    """seed_demo_data tells the baseline from the head by the upgrade's tables and columns, read
    from the migration graph: they are exactly the ones this module lists."""
    from seeding import upgrade_schema

    new_tables, new_columns = upgrade_schema()
    assert new_tables == NEW_TABLES
    assert new_columns == {"subscriptions": NEW_SUBSCRIPTION_COLUMNS, "users": {"permissions"}}
