"""rollup_analytics: the README definitions of MRR, churn and success rate, idempotent, on both engines."""

from __future__ import annotations

import datetime
import uuid
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accounts.models import User
from analytics.models import PaymentAnalytics, SubscriptionAnalytics
from analytics.rollup import rollup
from billing.models import PaymentIntent, Subscription
from migrations_ops.validation import run_validation

UTC = datetime.UTC
DAY = datetime.date(2026, 3, 10)


def at(day_offset: int, hour: int = 12) -> datetime.datetime:
    return datetime.datetime.combine(DAY + datetime.timedelta(days=day_offset), datetime.time(hour), tzinfo=UTC)


def seed(using: str) -> None:
    user = User.objects.db_manager(using).create_user(email=f"{uuid.uuid4().hex[:8]}@example.com")
    subs = Subscription.objects.using(using)

    def sub(status, started, total, interval="month", cancelled=None):
        return subs.create(
            user=user, plan="basic", status=status, price=total, total_cost=total, base_cost=total,
            delivery_cost=0, tax_amount=0, discount_amount=0, loyalty_discount=0, billing_interval=interval,
            started_at=started, cancelled_at=cancelled,
        )  # fmt: skip

    sub("active", at(-30), Decimal("10.00"))
    sub("past_due", at(-30), Decimal("20.00"))  # past due still counts in MRR
    sub("active", at(-30), Decimal("120.00"), interval="year")  # 10.00 a month
    sub("paused", at(-30), Decimal("99.00"))  # paused: not live, not in MRR
    sub("cancelled", at(-30), Decimal("50.00"), cancelled=at(0, 8))  # churned on DAY
    sub("active", at(0, 23), Decimal("7.00"))  # new on DAY, live at its end
    sub("active", at(1), Decimal("1000.00"))  # the day after: not counted
    intents = PaymentIntent.objects.using(using)
    for n, (status, code, amount) in enumerate(
        [
            ("succeeded", "", 1000),
            ("succeeded", "", 2000),
            ("succeeded", "", 3000),
            ("requires_payment_method", "card_declined", 500),
            ("canceled", "", 700),
            ("processing", "", 900),  # in flight: in total and volume, not in the rate
        ]
    ):
        intents.create(
            stripe_payment_intent_id=f"pi_{n}", user=user, amount=amount, status=status, failure_code=code,
            amount_received=amount if status == "succeeded" else 0, created_at=at(0, 1 + n),
        )  # fmt: skip
    intents.create(stripe_payment_intent_id="pi_late", user=user, amount=1, status="succeeded", created_at=at(1, 0))


def test_daily_rows_follow_the_definitions_and_rerun_replaces_them(migrated_db):
    using = migrated_db.alias
    seed(using)
    result = rollup(DAY - datetime.timedelta(days=1), DAY, using=using)
    assert (result.days, result.first, result.last) == (2, DAY - datetime.timedelta(days=1), DAY)
    day = SubscriptionAnalytics.objects.using(using).get(date=DAY)
    assert (day.active_subscriptions, day.new_subscriptions, day.cancelled_subscriptions) == (4, 1, 1)
    assert day.paused_subscriptions == 1
    assert day.mrr == Decimal("47.00")  # 10 + 20 + 120/12 + 7
    assert day.churn_rate == Decimal("0.250000")  # 1 cancelled / 4 live at the start of the day
    before = SubscriptionAnalytics.objects.using(using).get(date=DAY - datetime.timedelta(days=1))
    assert (before.active_subscriptions, before.mrr, before.churn_rate) == (4, Decimal("90.00"), Decimal("0"))
    pay = PaymentAnalytics.objects.using(using).get(date=DAY)
    assert (pay.total_payments, pay.succeeded_payments, pay.failed_payments) == (6, 3, 2)
    assert (pay.volume_minor, pay.succeeded_volume_minor) == (8100, 6000)
    assert pay.success_rate == Decimal("0.600000")  # 3 / (3 + 2)
    # idempotent: a re-run after a late change replaces the row, never adds one
    PaymentIntent.objects.using(using).filter(stripe_payment_intent_id="pi_5").update(status="succeeded")
    rollup(DAY, using=using)
    assert PaymentAnalytics.objects.using(using).filter(date=DAY).count() == 1
    assert PaymentAnalytics.objects.using(using).get(date=DAY).succeeded_payments == 4
    assert SubscriptionAnalytics.objects.using(using).count() == 2
    report = run_validation(using=using)
    assert report.ok, report.render()


def test_mrr_divides_the_yearly_sum_once_and_rounds_half_up_like_the_python_rule(migrated_db):
    """Three yearly subscriptions of 0.02 each: 6 cents a year is 0.5 cent a month. Rounding each
    subscription's share first would give 0.00; the rule divides the sum once and rounds half-up (0.01),
    in the rollup's SQL and in common.money.monthly_recurring_revenue, which seeding and repricing use."""
    from common.money import monthly_recurring_revenue

    using = migrated_db.alias
    user = User.objects.db_manager(using).create_user(email="half@example.com")
    for _ in range(3):
        Subscription.objects.using(using).create(
            user=user, plan="basic", price=Decimal("0.02"), billing_interval="year", started_at=at(-1)
        )
    rollup(DAY, using=using)
    assert SubscriptionAnalytics.objects.using(using).get(date=DAY).mrr == Decimal("0.01")
    assert monthly_recurring_revenue(6) == Decimal("0.01")
    assert monthly_recurring_revenue(5) == Decimal("0.00")  # 0.4166 cent
    assert monthly_recurring_revenue(-12) == Decimal("0.00")


@pytest.mark.django_db
def test_a_day_without_activity_has_zero_rates():
    rollup(DAY)
    day = SubscriptionAnalytics.objects.get(date=DAY)
    pay = PaymentAnalytics.objects.get(date=DAY)
    assert (day.active_subscriptions, day.mrr, day.churn_rate) == (0, Decimal("0"), Decimal("0"))
    assert (pay.total_payments, pay.success_rate) == (0, Decimal("0"))


@pytest.mark.django_db
def test_command_rolls_up_one_date_and_refuses_date_with_since(capsys):
    seed("default")
    call_command("rollup_analytics", "--date", DAY.isoformat())
    assert "rolled up 1 day(s)" in capsys.readouterr().out
    assert SubscriptionAnalytics.objects.get(date=DAY).active_subscriptions == 4
    with pytest.raises(CommandError):
        call_command("rollup_analytics", "--date", DAY.isoformat(), "--since", DAY.isoformat())


@pytest.mark.django_db
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param(["--date", "10/03/2026"], id="date-not-iso"),
        pytest.param(["--since", "x"], id="since-not-a-date"),
        pytest.param(["--date", "2999-01-01"], id="date-in-the-future"),
        pytest.param(["--since", "1990-01-01"], id="since-too-far-back"),
    ],
)
def test_command_bad_input_is_exit_2(bad):
    seed("default")
    with pytest.raises(CommandError) as refused:
        call_command("rollup_analytics", *bad)
    assert refused.value.returncode == 2, bad
