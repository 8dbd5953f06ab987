"""The Stripe webhook: signatures, idempotency, ordering, and loyalty points, with signed test payloads."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import pytest
from django.test import Client, override_settings
from django.urls import reverse

from accounts.models import User
from billing.models import PaymentIntent, PricingConfig, StripeEvent, Subscription
from billing.webhooks import process_event
from loyalty.models import LoyaltyAccount, PointsTransaction
from migrations_ops.validation import run_validation
from tests.dbs import ROOT, manage_env

SECRET = "whsec_test_secret"
URL = "/webhooks/stripe/"


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header, as Stripe documents it: t=<ts>,v1=<hmac_sha256(secret, "t.payload")>."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def event(event_type: str, intent_id: str, status: str, created: int, *, subscription=None, amount=3999, **extra):
    obj = {
        "id": intent_id,
        "object": "payment_intent",
        "amount": amount,
        "amount_received": amount if status == "succeeded" else 0,
        "currency": "usd",
        "status": status,
        "created": created - 10,
        "metadata": {"subscription_id": str(subscription.pk)} if subscription else {},
        **extra,
    }
    return {
        "id": f"evt_{uuid.uuid4().hex[:16]}",
        "object": "event",
        "livemode": False,
        "type": event_type,
        "created": created,
        "data": {"object": obj},
    }


def post(client: Client, payload: dict | bytes, signature: str | None = "sign"):
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    headers = {}
    if signature == "sign":
        headers["HTTP_STRIPE_SIGNATURE"] = sign(body)
    elif signature is not None:
        headers["HTTP_STRIPE_SIGNATURE"] = signature
    return client.post(URL, data=body, content_type="application/json", **headers)


@pytest.fixture
def subscription(db):
    user = User.objects.create_user(email=f"{uuid.uuid4().hex[:8]}@example.com")
    config = PricingConfig.objects.get(plan="premium", variant_id="default")
    PricingConfig.objects.filter(pk=config.pk).update(loyalty_points_per_unit=Decimal("2.00"))
    return Subscription.objects.create(
        user=user, plan="premium", status="active", price=Decimal("39.99"), pricing_config=config
    )


@pytest.fixture
def client():
    with override_settings(STRIPE_WEBHOOK_SECRET=SECRET):
        yield Client(enforce_csrf_checks=True)


def counts() -> tuple[int, int, int]:
    return StripeEvent.objects.count(), PaymentIntent.objects.count(), PointsTransaction.objects.count()


def test_the_url_is_routed():
    assert reverse("stripe-webhook") == URL


@pytest.mark.django_db
@pytest.mark.parametrize(
    "signature",
    [None, "", "t=1,v1=deadbeef", "garbage", "wrong-secret", "stale"],
    ids=["missing", "empty", "bad-hmac", "garbage", "wrong-secret", "too-old"],
)
def test_bad_signatures_are_400_and_write_nothing(client, subscription, signature):
    payload = event("payment_intent.succeeded", "pi_bad", "succeeded", int(time.time()), subscription=subscription)
    body = json.dumps(payload).encode()
    if signature == "wrong-secret":
        signature = sign(body, secret="whsec_other")
    elif signature == "stale":
        signature = sign(body, timestamp=int(time.time()) - 3600)  # outside Stripe's 5-minute tolerance
    response = post(client, body, signature)
    assert response.status_code == 400
    assert counts() == (0, 0, 0)


@pytest.mark.django_db
def test_no_secret_configured_refuses_everything(subscription):
    payload = event("payment_intent.succeeded", "pi_x", "succeeded", int(time.time()), subscription=subscription)
    with override_settings(STRIPE_WEBHOOK_SECRET=""):
        response = post(Client(), payload)
    assert response.status_code == 400 and counts() == (0, 0, 0)


@pytest.mark.django_db
def test_a_tampered_body_is_refused(client, subscription):
    body = json.dumps(event("payment_intent.succeeded", "pi_t", "succeeded", int(time.time()))).encode()
    signature = sign(body)
    response = post(client, body.replace(b"3999", b"1"), signature)
    assert response.status_code == 400 and counts() == (0, 0, 0)


@pytest.mark.django_db
def test_succeeded_intent_is_stored_and_earns_points_once_even_when_redelivered(client, subscription):
    now = int(time.time())
    succeeded = event(
        "payment_intent.succeeded",
        "pi_1",
        "succeeded",
        now,
        subscription=subscription,
        payment_method_details={"card": {"last4": "4242"}},
    )
    first = post(client, succeeded)
    assert first.status_code == 200 and first.json()["outcome"] == "applied"
    intent = PaymentIntent.objects.get(stripe_payment_intent_id="pi_1")
    assert (intent.status, intent.amount_received, intent.user_id) == ("succeeded", 3999, subscription.user_id)
    assert intent.last_event_id == succeeded["id"] and intent.succeeded_at is not None
    assert "4242" not in json.dumps(intent.metadata) + intent.failure_message  # no card data kept
    earned = PointsTransaction.objects.get(payment_intent=intent)
    assert (earned.kind, earned.points) == ("earn", 79)  # 39 whole dollars x 2 points, rounded down
    replay = post(client, succeeded)
    assert replay.status_code == 200 and replay.json()["outcome"] == "duplicate"
    # a different event saying the same thing does not earn again either
    again = post(client, event("payment_intent.succeeded", "pi_1", "succeeded", now + 5, subscription=subscription))
    assert again.status_code == 200
    assert PointsTransaction.objects.filter(payment_intent=intent).count() == 1
    assert LoyaltyAccount.objects.get(user_id=subscription.user_id).points_balance == 79
    subscription.refresh_from_db()
    assert subscription.points_earned == 79
    assert StripeEvent.objects.count() == 2
    report = run_validation()
    assert report.ok, report.render()


@pytest.mark.django_db
def test_an_older_event_never_moves_a_final_intent_back(client, subscription):
    now = int(time.time())
    assert post(client, event("payment_intent.succeeded", "pi_2", "succeeded", now, subscription=subscription))
    late = post(client, event("payment_intent.processing", "pi_2", "processing", now - 30, subscription=subscription))
    same_second = post(
        client,
        event("payment_intent.payment_failed", "pi_2", "requires_payment_method", now, subscription=subscription),
    )
    assert late.json()["outcome"] == same_second.json()["outcome"] == "stale"
    intent = PaymentIntent.objects.get(stripe_payment_intent_id="pi_2")
    assert intent.status == "succeeded"
    assert StripeEvent.objects.filter(outcome="stale").count() == 2


@pytest.mark.django_db
def test_events_in_order_move_the_intent_forward_and_failures_keep_code_not_card(client, subscription):
    now = int(time.time())
    post(
        client, event("payment_intent.created", "pi_3", "requires_payment_method", now - 20, subscription=subscription)
    )
    failed = event(
        "payment_intent.payment_failed",
        "pi_3",
        "requires_payment_method",
        now - 10,
        subscription=subscription,
        last_payment_error={
            "code": "card_declined",
            "decline_code": "insufficient_funds",
            "message": "Your card has insufficient funds.",
            "payment_method": {"card": {"last4": "0002", "exp_month": 1}},
        },
    )
    post(client, failed)
    intent = PaymentIntent.objects.get(stripe_payment_intent_id="pi_3")
    assert (intent.status, intent.failure_code) == ("requires_payment_method", "insufficient_funds")
    assert "0002" not in intent.failure_message
    assert not PointsTransaction.objects.exists()
    post(client, event("payment_intent.canceled", "pi_3", "canceled", now, subscription=subscription))
    intent.refresh_from_db()
    assert intent.status == "canceled"
    # canceled is final: a later success claim for the same intent is not applied and earns nothing
    post(client, event("payment_intent.succeeded", "pi_3", "succeeded", now + 10, subscription=subscription))
    intent.refresh_from_db()
    assert intent.status == "canceled" and not PointsTransaction.objects.exists()


@pytest.mark.django_db
def test_other_events_and_unknown_owners_are_recorded_but_change_nothing(client):
    now = int(time.time())
    other = {
        "id": "evt_charge",
        "type": "charge.succeeded",
        "livemode": False,
        "created": now,
        "data": {"object": {"object": "charge"}},
    }
    assert post(client, other).json()["outcome"] == "ignored"
    orphan = event("payment_intent.succeeded", "pi_orphan", "succeeded", now)  # no metadata: no user
    assert post(client, orphan).json()["outcome"] == "ignored"
    assert counts() == (2, 0, 0)


def test_process_event_is_idempotent_on_both_engines(migrated_db):
    """The same processing through process_event on both engines (scratch databases)."""
    using = migrated_db.alias
    user = User.objects.db_manager(using).create_user(email="pg@example.com")
    config = PricingConfig.objects.using(using).get(plan="basic", variant_id="default")
    sub = Subscription.objects.using(using).create(
        user=user, plan="basic", price=Decimal("9.99"), pricing_config=config
    )
    payload = event("payment_intent.succeeded", "pi_pg", "succeeded", int(time.time()), subscription=sub, amount=999)
    assert process_event(payload, using=using) == "applied"
    assert process_event(payload, using=using) == "duplicate"
    account = LoyaltyAccount.objects.using(using).get(user=user)
    assert account.points_balance == 9
    assert PaymentIntent.objects.using(using).get().status == "succeeded"
    report = run_validation(using=using)
    assert report.ok, report.render()


def test_management_commands_do_not_import_stripe(tmp_path):
    """Every command's system checks load the URLconf, which imports the webhook view: stripe (0.4 s
    of a 0.8 s start-up) must be imported only when a webhook arrives."""
    script = (
        "import sys, django; django.setup()\n"
        "from django.core.management import call_command\n"
        "call_command('check', verbosity=0)\n"
        "from django.urls import get_resolver; get_resolver().url_patterns\n"
        "print('stripe' in sys.modules, 'billing.webhooks' in sys.modules)\n"
    )
    env = manage_env(DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == ["False", "True"]  # stripe not loaded, the view module was
