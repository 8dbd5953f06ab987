"""The loyalty ledger: earn, redeem, expire, tiers, and concurrent earns on PostgreSQL."""

from __future__ import annotations

import threading
import uuid
from decimal import Decimal

import pytest
from django.db import connections
from django.test import override_settings

from accounts.models import User
from loyalty import ledger
from loyalty.models import LoyaltyAccount, PointsTransaction
from migrations_ops.validation import run_validation


def new_user(using: str = "default") -> User:
    return User.objects.db_manager(using).create_user(email=f"{uuid.uuid4().hex[:10]}@example.com")


def test_tier_thresholds_come_from_settings():
    assert ledger.tier_for(0) == "bronze"
    assert ledger.tier_for(999) == "bronze"
    assert ledger.tier_for(1_000) == "silver"
    assert ledger.tier_for(20_000) == "platinum"
    with override_settings(LOYALTY_TIER_THRESHOLDS={"bronze": 0, "silver": 10, "gold": 20, "platinum": 30}):
        assert ledger.tier_for(25) == "gold"


def test_points_per_currency_unit_round_down():
    assert ledger.points_for_amount(3999, Decimal("1.00")) == 39
    assert ledger.points_for_amount(3999, Decimal("2.00")) == 79
    assert ledger.points_for_amount(99, Decimal("1.00")) == 0


def test_earn_redeem_expire_keep_the_chain(migrated_db):
    using = migrated_db.alias
    account = ledger.account_for(new_user(using), using=using)
    assert ledger.account_for(account.user_id, using=using).pk == account.pk  # one account per user
    ledger.earn(account, 1200, using=using)
    spent = ledger.redeem(account, 300, using=using)
    assert (spent.points, spent.balance_after, spent.kind) == (-300, 900, "redeem")
    with pytest.raises(ledger.InsufficientPoints):
        ledger.redeem(account, 901, using=using)
    expired = ledger.expire(account, 5000, using=using)  # never more than the balance
    assert (expired.points, expired.balance_after) == (-900, 0)
    assert ledger.expire(account, 1, using=using) is None
    account.refresh_from_db(using=using)
    assert (account.points_balance, account.lifetime_points, account.tier) == (0, 1200, "silver")
    chain = list(PointsTransaction.objects.using(using).filter(account=account).values_list("points", "balance_after"))
    assert chain == [(1200, 1200), (-300, 900), (-900, 0)]
    for bad in (0, -5):
        with pytest.raises(ledger.LedgerError):
            ledger.earn(account, bad, using=using)
    report = run_validation(using=using)
    assert report.ok, report.render()


def test_concurrent_earns_on_postgres_both_count(pg_migrated_db):
    """Two threads, each with its own connection, earn at once: the row lock serialises them."""
    using = pg_migrated_db.alias
    account = ledger.account_for(new_user(using), using=using)
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []
    rounds = 25

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(rounds):
                ledger.earn(account, 7, using=using)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread below
            errors.append(exc)
        finally:
            connections[using].close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    account = LoyaltyAccount.objects.using(using).get(pk=account.pk)
    assert account.points_balance == account.lifetime_points == 2 * rounds * 7
    balances = list(
        PointsTransaction.objects.using(using)
        .filter(account=account)
        .order_by("id")
        .values_list("balance_after", flat=True)
    )
    assert balances == [7 * n for n in range(1, 2 * rounds + 1)]
    report = run_validation(using=using)
    assert report.ok, report.render()
