"""The loyalty tables: `points_transactions` rows (written alongside subscriptions, whose payments
earn the points) and one `loyalty_accounts` row per user holding the balance its ledger sums to."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from loyalty.ledger import tier_for
from loyalty.models import LoyaltyAccount
from seeding.base import REFERENCE, timestamp, user_uuid_hex

if TYPE_CHECKING:
    from seeding.run import Seeder

WELCOME_BONUS = 500


def ledger_row(
    tx_id: int, account: str, points: int, kind: str, balance: int, description: str, at: str, subscription, null
) -> tuple:
    """One `points_transactions` row in the model's field order (no seeded movement names a payment
    intent: the seeded points are earned by subscriptions)."""
    return (str(tx_id), account, str(points), kind, subscription, null, str(balance), description, at)


def write_accounts(seeder: Seeder, users: int) -> None:
    """One loyalty account per generated user; its tier is the ledger's rule for its lifetime points."""
    offset = seeder.uuid_offset
    base = seeder.account_base
    stamp = timestamp(REFERENCE)

    tiers: dict[int, str] = {}  # lifetimes repeat a lot: ask the ledger's rule once per value

    def rows() -> Iterator[tuple]:
        for user in range(users):
            lifetime = seeder.lifetime[user]
            tier = tiers.get(lifetime)
            if tier is None:
                tier = tiers[lifetime] = str(tier_for(lifetime))
            yield (
                str(base + user),
                user_uuid_hex(user, offset),
                str(seeder.balances[user]),
                str(lifetime),
                tier,
                timestamp(seeder.joined[user]),
                stamp,
            )

    seeder.write(LoyaltyAccount, rows(), users, "loyalty_accounts")
