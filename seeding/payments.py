"""The `payment_intents` table: Stripe intents of random subscriptions, in Stripe's minor units."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from analytics.rollup import payment_failed
from billing.models import PaymentIntent
from seeding.analytics import PaymentDays
from seeding.base import DAY, REFERENCE, SeedRefused, timestamp, user_uuid_hex

if TYPE_CHECKING:
    from seeding.run import Seeder

# (status, cumulative probability, failure code, failure message)
PAYMENT_OUTCOMES = (
    ("succeeded", 0.80, "", ""),
    ("requires_payment_method", 0.88, "card_declined", "Your card was declined."),
    ("requires_action", 0.92, "", ""),
    ("processing", 0.95, "", ""),
    ("canceled", 1.0, "", ""),
)


def write_payment_intents(seeder: Seeder, count: int) -> None:
    """Payment intents of random subscriptions (amount = the subscription's total, in cents)."""
    rng = seeder.rng
    null = seeder.null
    # the rng's bound methods as locals: the row loop below runs once per intent
    random_, randrange, getrandbits = rng.random, rng.randrange, rng.getrandbits
    offset = seeder.uuid_offset
    subs = len(seeder.sub_user)
    first_sub = seeder.first_subscription_id
    pi_id = seeder.next_ids["payment_intents"]
    seeder.payment_days = days = PaymentDays(seeder.days_window)
    if count and not subs:
        raise SeedRefused("payment intents need subscriptions: pass --subscriptions as well")

    def rows() -> Iterator[tuple]:
        nonlocal pi_id
        for _ in range(count):
            position = randrange(subs)
            amount = seeder.sub_total[position]
            created = min(seeder.sub_started[position] + randrange(0, 60 * DAY), REFERENCE - randrange(1, 3600))
            r = random_()
            for status, threshold, code, message in PAYMENT_OUTCOMES:  # noqa: B007
                if r < threshold:
                    break
            succeeded = status == "succeeded"
            created_at = timestamp(created)
            finished_at = timestamp(created + randrange(1, 120))
            days.add(created, amount, succeeded, payment_failed(status, code))
            yield (
                str(pi_id),
                f"pi_{pi_id:x}{getrandbits(80):020x}",  # unique by construction: the id is part of it
                str(first_sub + position),
                user_uuid_hex(seeder.sub_user[position], offset),
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

    seeder.write(PaymentIntent, rows(), count, "payment_intents")
