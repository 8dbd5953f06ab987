"""Issue 14: the webhook fed Stripe's own object shapes (tests/fixtures/stripe/), signed as Stripe signs.

Engine-dependent behaviour runs on real SQLite files and a real PostgreSQL server (scratch databases);
the race tests use real threads on PostgreSQL.
"""

from __future__ import annotations

import datetime
import re
import threading
import time
from decimal import Decimal

import pytest
from django.db import connections
from django.test import Client, override_settings

from accounts.models import User
from analytics.models import PaymentAnalytics, PaymentCurrencyAnalytics
from analytics.rollup import rollup
from billing.models import PaymentIntent, PricingConfig, StripeEvent, Subscription
from billing.webhooks import process_event
from common import currency
from loyalty.models import LoyaltyAccount, PointsTransaction
from migrations_ops.validation import run_validation
from tests import stripe_fixtures as sf


@pytest.fixture
def client():
    with override_settings(STRIPE_WEBHOOK_SECRET=sf.SECRET, STRIPE_LIVEMODE=False):
        yield Client(enforce_csrf_checks=True)


def make_subscription(using: str = "default", *, plan: str = "premium", ppu: str = "2.00", currency_code="USD"):
    user = User.objects.db_manager(using).create_user(email=f"{sf.new_id('u')}@example.com")
    config = PricingConfig.objects.using(using).get(plan=plan, variant_id="default")
    PricingConfig.objects.using(using).filter(pk=config.pk).update(
        loyalty_points_per_unit=Decimal(ppu), currency=currency_code
    )
    return Subscription.objects.using(using).create(
        user=user, plan=plan, status="active", price=Decimal("39.99"), pricing_config=config
    )


def balance(user_id, using: str = "default") -> int:
    account = LoyaltyAccount.objects.using(using).filter(user_id=user_id).first()
    return account.points_balance if account else 0


def succeeded_for(subscription: Subscription, *, amount: int = 2000, code: str = "usd", **changes) -> dict:
    return sf.intent(
        "succeeded",
        amount=amount,
        currency=code,
        id=sf.new_id("pi"),
        metadata={"subscription_id": str(subscription.pk)},
        **changes,
    )


# --- 1. malformed but authentic payloads: 400 or a recorded `ignored`, never 500 ---------------------------


def _envelope(**changes):
    payload = sf.event("payment_intent.succeeded", sf.intent("succeeded"))
    payload.update(changes)
    return payload


@pytest.mark.django_db
@pytest.mark.parametrize(
    "payload",
    [
        [],
        [_envelope()],
        "evt_1",
        42,
        None,
        _envelope(data="a string"),
        _envelope(data={"object": "pi_1"}),
        _envelope(data={"object": [1, 2]}),
        _envelope(created=10**20),
        _envelope(created=-1),
        _envelope(created="1680064028"),
        _envelope(created=True),
        _envelope(created=1.5e9),
        _envelope(livemode="false"),
        _envelope(id=None),
        _envelope(id="evt_\x00"),
        _envelope(id="e" * 300),
        _envelope(type=["payment_intent.succeeded"]),
        b"\xff\xfe not utf-8",
        b"[" * 100_000 + b"]" * 100_000,
        b"{not json",
    ],
    # Stable ids (the envelope's event id is random): parallel workers must collect the same tests.
    ids=lambda p: re.sub(r"evt_[0-9a-f]{8,}", "evt_*", repr(p))[:40],
)
def test_a_signed_payload_that_is_not_an_event_is_400_and_writes_nothing(client, payload):
    response = sf.post(client, payload)
    assert response.status_code == 400, response.content
    assert not StripeEvent.objects.exists() and not PaymentIntent.objects.exists()


MALFORMED_OBJECTS = {
    "user_id not a UUID": {"metadata": {"user_id": "12345"}},
    "user_id a dict": {"metadata": {"user_id": {"id": 1}}},
    "subscription_id beyond bigint": {"metadata": {"subscription_id": "9" * 30}},
    "subscription_id unicode digits": {"metadata": {"subscription_id": "\u00b2"}},
    "amount a string": {"amount": "2000"},
    "amount negative": {"amount": -5},
    "amount_received a float": {"amount_received": 20.5},
    "currency not a code": {"currency": "us dollars"},
    "status unknown": {"status": "exploded"},
    "last_payment_error a string": {"last_payment_error": "declined"},
    "id with a NUL": {"id": "pi_\x00"},
    "id missing": {"id": None},
}


@pytest.mark.parametrize("changes", MALFORMED_OBJECTS.values(), ids=MALFORMED_OBJECTS.keys())
def test_a_malformed_object_is_recorded_as_ignored_on_both_engines(migrated_db, changes):
    using = migrated_db.alias
    payload = sf.event("payment_intent.succeeded", {**sf.intent("succeeded", id=sf.new_id("pi")), **changes})
    assert process_event(payload, using=using) == "ignored"
    assert StripeEvent.objects.using(using).get(event_id=payload["id"]).outcome == "ignored"
    assert not PaymentIntent.objects.using(using).exists()


@pytest.mark.django_db
def test_a_non_uuid_user_id_through_the_view_is_200_ignored_not_500(client):
    payload = sf.event("payment_intent.succeeded", sf.intent("succeeded", metadata={"user_id": "42"}))
    response = sf.post(client, payload)
    assert (response.status_code, response.json()["outcome"]) == (200, "ignored")


def test_nul_characters_in_texts_are_dropped_on_both_engines(migrated_db):
    using = migrated_db.alias
    sub = make_subscription(using)
    error = sf.obj("last_payment_error_card_declined", message="Declined\x00 by bank", decline_code="do_not\x00honor")
    payload = sf.event(
        "payment_intent.payment_failed",
        sf.intent(
            id=sf.new_id("pi"), last_payment_error=error, metadata={"subscription_id": str(sub.pk), "n": "a\x00b"}
        ),
    )
    assert process_event(payload, using=using) == "applied"
    intent = PaymentIntent.objects.using(using).get()
    assert (intent.failure_code, intent.failure_message) == ("do_nothonor", "Declined by bank")
    assert intent.metadata["n"] == "ab"


# --- 2. points per currency, in Stripe's minor units ----------------------------------------------------------


def test_stripe_decimal_lists():
    assert [currency.decimals(c) for c in ("usd", "jpy", "JPY", "kwd", "bhd", "krw", "eur")] == [2, 0, 0, 3, 3, 0, 2]
    assert currency.to_major(1000, "jpy") == 1000 and currency.to_major(1000, "kwd") == Decimal("1.000")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "amount", "points"),
    [("jpy", 1000, 1000), ("kwd", 1000, 1), ("kwd", 12_340, 12), ("usd", 1999, 19), ("clp", 5000, 5000)],
)
def test_points_are_whole_units_of_the_payments_currency(client, code, amount, points):
    sub = make_subscription(ppu="1.00", currency_code=code.upper())
    response = sf.post(client, sf.event("payment_intent.succeeded", succeeded_for(sub, amount=amount, code=code)))
    assert response.json()["outcome"] == "applied"
    assert balance(sub.user_id) == points
    assert PaymentIntent.objects.get().currency == code


@pytest.mark.django_db
def test_a_payment_in_another_currency_than_its_config_uses_the_per_currency_rates(client):
    sub = make_subscription(ppu="1.00", currency_code="USD")
    with override_settings(LOYALTY_POINTS_PER_UNIT={"usd": Decimal("1"), "jpy": Decimal("0.01")}):
        sf.post(client, sf.event("payment_intent.succeeded", succeeded_for(sub, amount=10_000, code="jpy")))
        sf.post(client, sf.event("payment_intent.succeeded", succeeded_for(sub, amount=5000, code="eur")))
    assert balance(sub.user_id) == 100  # 10,000 yen x 0.01; euros have no rate: nothing
    assert PaymentIntent.objects.filter(status="succeeded").count() == 2


def test_analytics_never_add_minor_units_of_different_currencies(migrated_db):
    using = migrated_db.alias
    sub = make_subscription(using)
    day = datetime.date(2025, 3, 4)
    created = int(datetime.datetime(2025, 3, 4, 12, tzinfo=datetime.UTC).timestamp())
    for amount, code in ((2000, "usd"), (500, "usd"), (1000, "jpy"), (1230, "kwd")):
        payload = sf.event(
            "payment_intent.succeeded", succeeded_for(sub, amount=amount, code=code, created=created), created
        )
        assert process_event(payload, using=using) == "applied"
    rollup(day, using=using)
    rollup(day, using=using)  # idempotent
    overall = PaymentAnalytics.objects.using(using).get(date=day)
    assert (overall.total_payments, overall.succeeded_payments) == (4, 4)
    assert (overall.volume_minor, overall.succeeded_volume_minor) == (2500, 2500)  # usd only
    per_currency = {
        row.currency: (row.total_payments, row.volume_minor, row.succeeded_volume_minor)
        for row in PaymentCurrencyAnalytics.objects.using(using).filter(date=day)
    }
    assert per_currency == {"usd": (2, 2500, 2500), "jpy": (1, 1000, 1000), "kwd": (1, 1230, 1230)}


# --- 3. ordering: same-second ties by lifecycle place, races serialised per intent -----------------------------


@pytest.mark.django_db
def test_created_arriving_after_a_same_second_failure_keeps_the_failure(client):
    sub = make_subscription()
    now, pi = int(time.time()), sf.new_id("pi")
    meta = {"subscription_id": str(sub.pk)}
    error = sf.obj("last_payment_error_card_declined")
    failed = sf.intent(id=pi, metadata=meta, last_payment_error=error)
    assert sf.post(client, sf.event("payment_intent.payment_failed", failed, now)).json()["outcome"] == "applied"
    late = sf.post(client, sf.event("payment_intent.created", sf.intent(id=pi, metadata=meta), now))
    assert late.json()["outcome"] == "stale"
    intent = PaymentIntent.objects.get(stripe_payment_intent_id=pi)
    assert (intent.status, intent.failure_code) == ("requires_payment_method", "insufficient_funds")
    assert intent.failure_message == "Your card has insufficient funds."
    assert "9995" not in intent.failure_message + str(intent.metadata)  # the card in the error is not kept
    # a later attempt that needs 3-D Secure moves on, and the last failure reason is still there
    action = sf.intent("requires_action", id=pi, metadata=meta)
    assert sf.post(client, sf.event("payment_intent.requires_action", action, now + 1)).json()["outcome"] == "applied"
    intent.refresh_from_db()
    assert (intent.status, intent.failure_code) == ("requires_action", "insufficient_funds")


@pytest.mark.django_db
def test_created_arriving_after_a_same_second_requires_action_does_not_move_it_back(client):
    sub = make_subscription()
    now, pi = int(time.time()), sf.new_id("pi")
    meta = {"subscription_id": str(sub.pk)}
    sf.post(client, sf.event("payment_intent.requires_action", sf.intent("requires_action", id=pi, metadata=meta), now))
    late = sf.post(client, sf.event("payment_intent.created", sf.intent(id=pi, metadata=meta), now))
    assert late.json()["outcome"] == "stale"
    assert PaymentIntent.objects.get(stripe_payment_intent_id=pi).status == "requires_action"


RACE_RUNS = 30


def _race(using: str, first: dict, second: dict) -> list[str]:
    """Both events processed at the same moment by two threads with their own connections."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def deliver(payload):
        try:
            barrier.wait()
            outcomes.append(process_event(payload, using=using))
        except BaseException as exc:  # reported by the test below, never swallowed
            errors.append(exc)
        finally:
            connections[using].close()

    threads = [threading.Thread(target=deliver, args=(p,)) for p in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return outcomes


@pytest.mark.parametrize("same_second", [False, True], ids=["next-second", "same-second"])
def test_racing_first_events_of_a_new_intent_end_in_the_newest_state(pg_migrated_db, same_second):
    using = pg_migrated_db.alias
    sub = make_subscription(using)
    meta = {"subscription_id": str(sub.pk)}
    newest = 0
    for run in range(RACE_RUNS):
        pi, now = sf.new_id("pi"), int(time.time())
        older = sf.event("payment_intent.created", sf.intent(id=pi, metadata=meta), now)
        newer_at = now if same_second else now + 1
        newer = sf.event("payment_intent.succeeded", sf.intent("succeeded", id=pi, metadata=meta), newer_at)
        pair = (older, newer) if run % 2 else (newer, older)
        outcomes = _race(using, *pair)
        intent = PaymentIntent.objects.using(using).get(stripe_payment_intent_id=pi)
        applied = StripeEvent.objects.using(using).filter(event_id__in=[older["id"], newer["id"]], outcome="applied")
        if intent.status == "succeeded" and intent.last_event_id == newer["id"]:
            newest += 1
        # the older one is applied only when it really came first; never both "applied" with the old state
        assert sorted(outcomes) in (["applied", "applied"], ["applied", "stale"])
        assert applied.filter(event_id=newer["id"]).exists()
    assert newest == RACE_RUNS, f"{newest} of {RACE_RUNS} runs ended in the newest state"
    earned = PointsTransaction.objects.using(using).filter(kind="earn")
    assert earned.count() == RACE_RUNS  # each intent earned once
    assert balance(sub.user_id, using) == RACE_RUNS * 40
    report = run_validation(using=using)
    assert report.ok, report.render()


def test_a_redelivery_racing_itself_applies_once(pg_migrated_db):
    using = pg_migrated_db.alias
    sub = make_subscription(using)
    for _ in range(10):
        payload = sf.event("payment_intent.succeeded", succeeded_for(sub))
        assert sorted(_race(using, payload, payload)) == ["applied", "duplicate"]
    assert balance(sub.user_id, using) == 10 * 40


# --- 4. Stripe Billing and Checkout: customers mapped to users -----------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("fixture", ["payment_intent_2024-06-20_invoice", "payment_intent"])
def test_a_billing_renewal_is_linked_through_the_customer_and_earns(client, fixture):
    sub = make_subscription(ppu="1.00")
    customer = sf.obj("customer", id=sf.new_id("cus"), metadata={"user_id": str(sub.user_id)})
    assert sf.post(client, sf.event("customer.created", customer)).json()["outcome"] == "applied"
    assert User.objects.get(pk=sub.user_id).stripe_customer_id == customer["id"]
    renewal = sf.obj(fixture, id=sf.new_id("pi"), customer=customer["id"], status="succeeded", amount=3999)
    renewal["amount_received"] = 3999
    assert renewal["metadata"] == {}
    api_version = "2024-06-20" if "invoice" in fixture else "2025-08-27.basil"
    response = sf.post(client, sf.event("payment_intent.succeeded", renewal, api_version=api_version))
    assert response.json()["outcome"] == "applied"
    intent = PaymentIntent.objects.get(stripe_payment_intent_id=renewal["id"])
    assert (intent.user_id, intent.subscription_id) == (sub.user_id, sub.pk)  # the user's only subscription
    assert balance(sub.user_id) == 39
    sub.refresh_from_db()
    assert sub.points_earned == 39


@pytest.mark.django_db
def test_a_user_without_subscription_earns_by_the_default_rate(client):
    user = User.objects.create_user(email="nosub@example.com")
    customer = sf.obj("customer", id=sf.new_id("cus"), metadata={"user_id": str(user.pk)})
    sf.post(client, sf.event("customer.created", customer))
    payment = sf.intent("succeeded", id=sf.new_id("pi"), amount=1500, customer=customer["id"])
    assert sf.post(client, sf.event("payment_intent.succeeded", payment)).json()["outcome"] == "applied"
    assert PaymentIntent.objects.get().subscription_id is None
    assert balance(user.pk) == 15  # LOYALTY_POINTS_PER_UNIT usd=1


@pytest.mark.django_db
@pytest.mark.parametrize("session_first", [True, False], ids=["session-first", "intent-first"])
def test_checkout_links_the_customer_and_the_payment_earns_once(client, session_first):
    user = User.objects.create_user(email="checkout@example.com")
    customer, pi = sf.new_id("cus"), sf.new_id("pi")
    now = int(time.time())
    session = sf.obj("checkout_session", id=sf.new_id("cs_test"), client_reference_id=str(user.pk))
    session.update(customer=customer, payment_intent=pi, amount_total=2198, created=now - 60)
    completed = sf.event("checkout.session.completed", session, now)
    succeeded = sf.event("payment_intent.succeeded", sf.intent("succeeded", id=pi, amount=2198, customer=customer), now)
    outcomes = [
        sf.post(client, e).json()["outcome"]
        for e in ((completed, succeeded) if session_first else (succeeded, completed))
    ]
    assert outcomes == ["applied", "applied"] if session_first else ["ignored", "applied"]
    assert User.objects.get(pk=user.pk).stripe_customer_id == customer
    intent = PaymentIntent.objects.get(stripe_payment_intent_id=pi)
    assert (intent.status, intent.amount_received, intent.user_id) == ("succeeded", 2198, user.pk)
    assert balance(user.pk) == 21
    assert PointsTransaction.objects.filter(kind="earn").count() == 1


@pytest.mark.django_db
def test_a_customer_is_never_moved_to_another_user(client):
    first = User.objects.create_user(email="first@example.com")
    second = User.objects.create_user(email="second@example.com")
    cus = sf.new_id("cus")
    sf.post(client, sf.event("customer.created", sf.obj("customer", id=cus, metadata={"user_id": str(first.pk)})))
    moved = sf.post(
        client, sf.event("customer.updated", sf.obj("customer", id=cus, metadata={"user_id": str(second.pk)}))
    )
    assert moved.json()["outcome"] == "ignored"
    assert User.objects.get(stripe_customer_id=cus) == first


# --- 5. refunds and lost disputes take the points back, once -------------------------------------------------


def _paid(client, sub, amount=2000) -> dict:
    payment = succeeded_for(sub, amount=amount)
    assert sf.post(client, sf.event("payment_intent.succeeded", payment)).json()["outcome"] == "applied"
    return payment


def _refund(client, payment, refunded: int):
    charge = sf.obj(
        "charge",
        id=sf.new_id("ch"),
        payment_intent=payment["id"],
        amount=payment["amount"],
        amount_captured=payment["amount"],
        amount_refunded=refunded,
        refunded=refunded == payment["amount"],
    )
    return sf.post(client, sf.event("charge.refunded", charge)).json()["outcome"]


@pytest.mark.django_db
def test_partial_then_full_refund_take_back_the_points_once(client):
    sub = make_subscription()  # 2 points per dollar
    payment = _paid(client, sub)
    assert balance(sub.user_id) == 40
    assert _refund(client, payment, 500) == "applied"
    assert balance(sub.user_id) == 30
    assert _refund(client, payment, 500) == "applied"  # another delivery of the same cumulative figure
    assert balance(sub.user_id) == 30
    assert _refund(client, payment, 2000) == "applied"
    account = LoyaltyAccount.objects.get(user_id=sub.user_id)
    assert (account.points_balance, account.lifetime_points) == (0, 0)
    sub.refresh_from_db()
    assert sub.points_earned == 0
    taken = PointsTransaction.objects.filter(kind="adjust").values_list("points", flat=True)
    assert sorted(taken) == [-30, -10]
    assert run_validation().ok


@pytest.mark.django_db
def test_a_refund_before_the_success_event_still_settles(client):
    sub = make_subscription()
    payment = succeeded_for(sub)
    sf.post(client, sf.event("payment_intent.processing", dict(payment, status="processing", amount_received=0)))
    assert _refund(client, payment, 2000) == "applied"
    sf.post(client, sf.event("payment_intent.succeeded", payment, int(time.time()) + 1))
    assert balance(sub.user_id) == 0
    assert PointsTransaction.objects.filter(kind="earn").count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(("status", "left"), [("lost", 20), ("won", 40), ("warning_closed", 40)])
def test_a_lost_dispute_takes_back_the_disputed_share(client, status, left):
    sub = make_subscription()
    payment = _paid(client, sub)
    dispute = sf.obj("dispute", id=sf.new_id("dp"), payment_intent=payment["id"], amount=1000, status=status)
    for _ in range(2):  # a redelivery under another event id takes nothing more
        sf.post(client, sf.event("charge.dispute.closed", dispute))
    assert balance(sub.user_id) == left


@pytest.mark.django_db
def test_points_already_spent_are_not_taken_below_zero(client):
    from loyalty import ledger

    sub = make_subscription()
    payment = _paid(client, sub)
    ledger.redeem(LoyaltyAccount.objects.get(user_id=sub.user_id), 35)
    assert _refund(client, payment, 2000) == "applied"
    assert balance(sub.user_id) == 0
    assert run_validation().ok


# --- 6. livemode must match the configured mode -------------------------------------------------------------


@pytest.mark.django_db
def test_a_test_mode_event_on_a_live_server_is_refused_and_recorded(client):
    sub = make_subscription()
    payload = sf.event("payment_intent.succeeded", succeeded_for(sub), livemode=False)
    with override_settings(STRIPE_LIVEMODE=True):
        response = sf.post(client, payload)
    assert response.status_code == 400 and response.json()["outcome"] == "refused"
    assert StripeEvent.objects.get(event_id=payload["id"]).outcome == "refused"
    assert not PaymentIntent.objects.exists() and balance(sub.user_id) == 0
    # a live event on a test-mode server is refused the same way
    live = sf.event("payment_intent.succeeded", succeeded_for(sub), livemode=True)
    assert sf.post(client, live).status_code == 400
    # once the configuration is right, Stripe's retry of the refused event is applied
    assert sf.post(client, payload).json()["outcome"] == "applied"
    assert balance(sub.user_id) == 40
