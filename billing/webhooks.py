"""Stripe webhooks: payment intents, refunds, lost disputes and customer links, as Stripe sends them.

- Signature: `stripe.WebhookSignature.verify_header` against STRIPE_WEBHOOK_SECRET (5-minute
  tolerance); no secret, no header or a bad signature: 400 and nothing written. The payload is then
  parsed and checked here (not by `construct_event`, which raises on a signed body that is not an
  event object): anything that is not an event envelope is 400; an authentic event whose object is
  malformed is recorded as `ignored`. Never a 500 for a payload.
- livemode: an event whose `livemode` differs from STRIPE_LIVEMODE is recorded as `refused` and
  answered 400; a refused event id is checked again on redelivery (the configuration may be fixed).
- Idempotent on the event id: each processed event is a `StripeEvent` row (unique event id), written
  in the same transaction as its effects, so a redelivered event changes nothing.
- Ordering, per intent, under the intent's row lock (also when two deliveries race to create it):
  an event older than the last applied one is `stale`; when the seconds tie (Stripe's `created` has
  one-second resolution) the status's place in the lifecycle decides (LIFECYCLE_PLACE); an intent in
  a final status (succeeded, canceled) never moves; a failure reason is kept until a newer failure.
- Owners: `metadata.subscription_id`, `metadata.user_id`, else the intent's Stripe `customer` mapped to
  a user (`users.stripe_customer_id`, filled from `customer.created`/`customer.updated` with
  `metadata.user_id` and from `checkout.session.completed` with `client_reference_id`).
- Points: a succeeded intent earns once, in whole units of its currency (common.currency);
  `charge.refunded` and lost disputes take them back in proportion, once. billing does not import
  loyalty: it sends common.signals.payment_succeeded / payment_reduced in the event's transaction,
  loyalty's ledger answers with the points it moved, and billing adds them to `points_earned`.
- No card data: only ids, amounts, status, the failure code and message, and merchant metadata.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import uuid
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS, IntegrityError, OperationalError, transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.models import PaymentIntent, StripeEvent, Subscription
from billing.pricing import active_config
from common.signals import payment_reduced, payment_succeeded, points_moved

log = logging.getLogger(__name__)

STATUS_BY_EVENT = {
    "payment_intent.created": None,  # take the status from the object
    "payment_intent.succeeded": PaymentIntent.Status.SUCCEEDED,
    "payment_intent.canceled": PaymentIntent.Status.CANCELED,
    "payment_intent.payment_failed": PaymentIntent.Status.REQUIRES_PAYMENT_METHOD,
    "payment_intent.processing": PaymentIntent.Status.PROCESSING,
    "payment_intent.requires_action": PaymentIntent.Status.REQUIRES_ACTION,
    "payment_intent.amount_capturable_updated": PaymentIntent.Status.REQUIRES_CAPTURE,
}

# Stripe's PaymentIntent lifecycle: created (requires_payment_method) -> requires_confirmation ->
# requires_action -> processing -> requires_capture -> succeeded/canceled, or back to
# requires_payment_method after a failed attempt. Used only to order events of the same second.
LIFECYCLE_PLACE = {
    PaymentIntent.Status.REQUIRES_PAYMENT_METHOD: 0,
    PaymentIntent.Status.REQUIRES_CONFIRMATION: 1,
    PaymentIntent.Status.REQUIRES_ACTION: 2,
    PaymentIntent.Status.PROCESSING: 3,
    PaymentIntent.Status.REQUIRES_CAPTURE: 4,
    PaymentIntent.Status.SUCCEEDED: 6,
    PaymentIntent.Status.CANCELED: 6,
}
FAILED_PLACE = 5  # requires_payment_method after a declined attempt: later than the attempt itself

# Stripe launched in 2011; a `created` outside [2011, 2100) is not a Stripe event.
MIN_CREATED, MAX_CREATED = 1_293_840_000, 4_102_444_800
EVENT_ID = re.compile(r"^[A-Za-z0-9_.-]{1,255}$")
EVENT_TYPE = re.compile(r"^[a-z0-9_.]{1,128}$")
OBJECT_ID = re.compile(r"^[A-Za-z0-9_]{1,255}$")
CURRENCY = re.compile(r"^[a-z]{3}$")
SUBSCRIPTION_ID = re.compile(r"^[0-9]{1,18}$")  # fits a bigint
LIVE_SUBSCRIPTION = ("active", "past_due", "paused")


class BadEvent(ValueError):
    """A signed payload that is not a Stripe event envelope (answered 400)."""


def parse_event(payload: str) -> dict[str, Any]:
    """The event envelope from a verified body, or BadEvent naming what is wrong."""
    try:
        event = json.loads(payload)
    except (ValueError, RecursionError):
        raise BadEvent("body is not JSON") from None
    if not isinstance(event, dict):
        raise BadEvent("not an event object")
    if not isinstance(event.get("id"), str) or not EVENT_ID.match(event["id"]):
        raise BadEvent("missing or malformed event id")
    if not isinstance(event.get("type"), str) or not EVENT_TYPE.match(event["type"]):
        raise BadEvent("missing or malformed event type")
    created = event.get("created")
    if type(created) is not int or not MIN_CREATED <= created < MAX_CREATED:
        raise BadEvent("missing or implausible created timestamp")
    if not isinstance(event.get("livemode"), bool):
        raise BadEvent("missing livemode")
    data = event.get("data")
    if not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        raise BadEvent("data.object is not an object")
    return event


def _int(value: Any) -> int | None:
    """A non-negative integer amount, or None when absent or malformed (bool is not an amount)."""
    if type(value) is int and 0 <= value < 2**63:
        return value
    return None


def _text(value: Any, limit: int | None = None) -> str:
    """A string safe for both engines (PostgreSQL refuses NUL characters), or '' when not a string."""
    text = value.replace("\x00", "") if isinstance(value, str) else ""
    return text[:limit] if limit else text


def _ref(value: Any) -> str | None:
    """A Stripe id field, given either as the id or as the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and OBJECT_ID.match(value) else None


def _timestamp(value: Any, fallback: datetime.datetime) -> datetime.datetime:
    if type(value) is int and MIN_CREATED <= value < MAX_CREATED:
        return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
    return fallback


def _metadata(obj: dict) -> dict[str, str]:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict):
        return {}
    return {_text(k): _text(v) if isinstance(v, str) else _text(json.dumps(v)) for k, v in metadata.items()}


def _status(event_type: str, obj: dict) -> str | None:
    status = obj.get("status") if isinstance(obj.get("status"), str) else None
    status = status or STATUS_BY_EVENT.get(event_type)
    return status if status in PaymentIntent.Status.values else None


def _place(status: str, failed: bool) -> int:
    if status == PaymentIntent.Status.REQUIRES_PAYMENT_METHOD and failed:
        return FAILED_PLACE
    return LIFECYCLE_PLACE[status]


def _user_model():
    return get_user_model()


def _user_by_id(user_id: Any, using: str):
    """The user of a metadata `user_id`, or None (also for a value that is not a UUID)."""
    try:
        return _user_model().objects.using(using).filter(pk=uuid.UUID(str(user_id))).first()
    except ValueError:
        log.warning("stripe webhook: malformed user_id %r in metadata", user_id)
        return None


def _only_live_subscription(user_id, using: str) -> int | None:
    """The user's subscription when there is exactly one not cancelled (a Stripe Billing renewal pays it)."""
    ids = list(
        Subscription.objects.using(using)
        .filter(user_id=user_id, status__in=LIVE_SUBSCRIPTION)
        .values_list("pk", flat=True)[:2]
    )
    return ids[0] if len(ids) == 1 else None


def _resolve_owner(obj: dict, using: str) -> tuple[object | None, int | None]:
    """(user_id, subscription_id) for a new intent: our metadata first, else its Stripe customer."""
    metadata = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    subscription_id = str(metadata.get("subscription_id", ""))
    if SUBSCRIPTION_ID.match(subscription_id):
        subscription = Subscription.objects.using(using).filter(pk=int(subscription_id)).first()
        if subscription is not None:
            return subscription.user_id, subscription.pk
    if metadata.get("user_id"):
        user = _user_by_id(metadata["user_id"], using)
        if user is not None:
            return user.pk, None
    customer = _ref(obj.get("customer"))
    if customer:
        user = _user_model().objects.using(using).filter(stripe_customer_id=customer).first()
        if user is not None:
            return user.pk, _only_live_subscription(user.pk, using)
    return None, None


def points_per_unit(intent: PaymentIntent, using: str = DEFAULT_DB_ALIAS) -> Decimal | None:
    """Points per whole unit of the intent's currency (README, "Stripe payment intents").

    The subscription's pricing config (or the one in effect when it succeeded) when it is priced in
    the intent's currency; otherwise settings.LOYALTY_POINTS_PER_UNIT[currency]; else None (no points).
    """
    currency = intent.currency.lower()
    subscription = intent.subscription
    if subscription is not None:
        config = subscription.pricing_config or active_config(
            subscription.plan, subscription.variant_id, intent.succeeded_at, using=using
        )
        if config is not None and config.currency.lower() == currency:
            return config.loyalty_points_per_unit
    rate = settings.LOYALTY_POINTS_PER_UNIT.get(currency)
    return Decimal(str(rate)) if rate is not None else None


def process_event(event: dict, *, using: str = DEFAULT_DB_ALIAS) -> str:
    """Apply one verified event (see parse_event); returns the outcome.

    'applied', 'stale', 'ignored', 'refused' (livemode mismatch) or 'duplicate' (seen before).
    """
    event_id, event_type = event["id"], event["type"]
    created = datetime.datetime.fromtimestamp(event["created"], tz=datetime.UTC)
    obj = event["data"]["object"]
    with transaction.atomic(using=using):
        record, fresh = StripeEvent.objects.using(using).get_or_create(
            event_id=event_id,
            defaults={
                "type": event_type,
                "created": created,
                "outcome": StripeEvent.Outcome.IGNORED,
                "stripe_payment_intent_id": _intent_ref(event_type, obj) or "",
            },
        )
        if not fresh and record.outcome != StripeEvent.Outcome.REFUSED:
            return "duplicate"
        if event["livemode"] != settings.STRIPE_LIVEMODE:
            log.error(
                "stripe webhook: %s has livemode=%s but STRIPE_LIVEMODE=%s; refused",
                event_id,
                event["livemode"],
                settings.STRIPE_LIVEMODE,
            )
            outcome = StripeEvent.Outcome.REFUSED
        else:
            outcome = _dispatch(event_id, event_type, created, obj, using)
        if outcome != record.outcome:
            record.outcome = outcome
            record.save(using=using, update_fields=["outcome"])
        return outcome


def _intent_ref(event_type: str, obj: dict) -> str | None:
    if event_type.startswith("payment_intent."):
        return _ref(obj.get("id"))
    return _ref(obj.get("payment_intent"))


def _dispatch(event_id: str, event_type: str, created: datetime.datetime, obj: dict, using: str) -> str:
    if event_type.startswith("payment_intent.") and obj.get("object") == "payment_intent":
        return _apply_intent(event_id, event_type, created, obj, using)
    if event_type == "charge.refunded" and obj.get("object") == "charge":
        return _apply_loss(obj, "amount_refunded", _int(obj.get("amount_refunded")), using)
    if event_type == "charge.dispute.closed" and obj.get("object") == "dispute":
        if obj.get("status") != "lost":
            return StripeEvent.Outcome.IGNORED  # won or warning_closed: the funds stay, so do the points
        return _apply_loss(obj, "amount_disputed_lost", _int(obj.get("amount")), using)
    if event_type in ("customer.created", "customer.updated") and obj.get("object") == "customer":
        return _link_customer(_ref(obj.get("id")), _metadata(obj).get("user_id"), using)
    if event_type == "checkout.session.completed" and obj.get("object") == "checkout.session":
        return _apply_checkout(event_id, created, obj, using)
    return StripeEvent.Outcome.IGNORED


def _apply_intent(event_id: str, event_type: str, created: datetime.datetime, obj: dict, using: str) -> str:
    status = _status(event_type, obj)
    intent_id = _ref(obj.get("id"))
    amount, received = _int(obj.get("amount", 0)), _int(obj.get("amount_received", 0))
    currency = _text(obj.get("currency")).lower()
    error = obj.get("last_payment_error")
    if (
        not status
        or not intent_id
        or amount is None
        or received is None
        or not CURRENCY.match(currency)
        or not isinstance(error, dict | None)
    ):
        log.warning("stripe webhook: %s carries a malformed payment intent; ignored", event_id)
        return StripeEvent.Outcome.IGNORED
    intents = PaymentIntent.objects.using(using)
    intent = intents.select_for_update().filter(stripe_payment_intent_id=intent_id).first()
    created_here = False
    if intent is None:
        user_id, subscription_id = _resolve_owner(obj, using)
        if user_id is None:
            log.warning("stripe webhook: %s for unknown intent %s has no known user; ignored", event_id, intent_id)
            return StripeEvent.Outcome.IGNORED
        try:
            # A savepoint: when a concurrent delivery inserted the row first, its unique index makes
            # this wait for that commit and fail, and the event is then ordered like any update.
            with transaction.atomic(using=using):
                intents.create(
                    stripe_payment_intent_id=intent_id,
                    user_id=user_id,
                    subscription_id=subscription_id,
                    amount=amount,
                    currency=currency,
                    status=status,
                    created_at=_timestamp(obj.get("created"), created),
                )
            created_here = True
        except IntegrityError:
            log.info("stripe webhook: intent %s was created by a concurrent delivery", intent_id)
        intent = intents.select_for_update().get(stripe_payment_intent_id=intent_id)
    failed = event_type == "payment_intent.payment_failed" or bool(error)
    if not created_here and _is_stale(intent, status, failed, created):
        return StripeEvent.Outcome.STALE
    became_succeeded = status == PaymentIntent.Status.SUCCEEDED and intent.succeeded_at is None
    intent.status = status
    intent.amount = amount or intent.amount
    intent.amount_received = received
    intent.currency = currency
    if error:  # never cleared: a later event without an error keeps the last failure reason
        intent.failure_code = _text(error.get("decline_code") or error.get("code"), 64)
        intent.failure_message = _text(error.get("message"))
    intent.metadata = _metadata(obj)
    intent.last_event_id = event_id
    intent.last_event_created = created
    if became_succeeded:
        intent.succeeded_at = created
    intent.save(using=using)
    if became_succeeded:
        _earn(intent, using)
    return StripeEvent.Outcome.APPLIED


def _is_stale(intent: PaymentIntent, status: str, failed: bool, created: datetime.datetime) -> bool:
    """Whether an event says less than the intent already knows."""
    if intent.status in PaymentIntent.FINAL_STATUSES and status != intent.status:
        return True
    last = intent.last_event_created
    if last is None or created > last:
        return False
    if created < last:
        return True
    current_failed = intent.status == PaymentIntent.Status.REQUIRES_PAYMENT_METHOD and bool(intent.failure_code)
    return _place(status, failed) < _place(intent.status, current_failed)


def _earn(intent: PaymentIntent, using: str) -> None:
    rate = points_per_unit(intent, using)
    earned = (
        points_moved(payment_succeeded.send(PaymentIntent, intent=intent, points_per_unit=rate, using=using))
        if rate
        else None
    )
    if earned is None:
        log.info("stripe webhook: intent %s earns no points (rate %s)", intent.stripe_payment_intent_id, rate)
    elif intent.subscription_id:
        Subscription.objects.using(using).filter(pk=intent.subscription_id).update(
            points_earned=F("points_earned") + earned
        )
    # A refund or lost dispute may have arrived before the success: settle it now.
    _take_back(intent, using)


def _take_back(intent: PaymentIntent, using: str) -> None:
    taken = points_moved(payment_reduced.send(PaymentIntent, intent=intent, using=using))
    if taken is not None and intent.subscription_id:
        Subscription.objects.using(using).filter(pk=intent.subscription_id).update(
            points_earned=Greatest(F("points_earned") + taken, Value(0))
        )


def _apply_loss(obj: dict, field: str, amount: int | None, using: str) -> str:
    """charge.refunded / a lost dispute: record the cumulative amount lost and take back points."""
    intent_id = _ref(obj.get("payment_intent"))
    if intent_id is None or amount is None:
        return StripeEvent.Outcome.IGNORED
    intent = PaymentIntent.objects.using(using).select_for_update().filter(stripe_payment_intent_id=intent_id).first()
    if intent is None:
        log.warning("stripe webhook: %s of unknown intent %s; ignored", field, intent_id)
        return StripeEvent.Outcome.IGNORED
    # Stripe's figures are cumulative (amount_refunded) or whole (a dispute): the largest seen wins,
    # so a redelivered or out-of-order event never takes twice.
    if amount > getattr(intent, field):
        setattr(intent, field, amount)
        intent.save(using=using, update_fields=[field, "updated_at"])
    if intent.succeeded_at is not None:
        _take_back(intent, using)
    return StripeEvent.Outcome.APPLIED


def _link_customer(customer_id: str | None, user_ref: Any, using: str) -> str:
    """Map a Stripe customer to a user (first link wins; a customer is never moved to another user)."""
    if customer_id is None or not user_ref:
        return StripeEvent.Outcome.IGNORED
    user = _user_by_id(user_ref, using)
    if user is None:
        return StripeEvent.Outcome.IGNORED
    users = _user_model().objects.using(using)
    holder = users.select_for_update().filter(stripe_customer_id=customer_id).first()
    if holder is not None:
        return StripeEvent.Outcome.APPLIED if holder.pk == user.pk else StripeEvent.Outcome.IGNORED
    if users.filter(pk=user.pk, stripe_customer_id__isnull=True).update(stripe_customer_id=customer_id) == 0:
        log.warning("stripe webhook: user %s already has another Stripe customer; %s not linked", user.pk, customer_id)
        return StripeEvent.Outcome.IGNORED
    return StripeEvent.Outcome.APPLIED


def _apply_checkout(event_id: str, created: datetime.datetime, obj: dict, using: str) -> str:
    """Link the session's customer to `client_reference_id`; a paid one-off session is its intent's success.

    Stripe does not order checkout.session.completed and payment_intent.succeeded: when the intent's
    event came first it found no owner, so the session applies the success itself (amount_total).
    """
    customer = _ref(obj.get("customer"))
    outcome = _link_customer(customer, obj.get("client_reference_id"), using) if customer else None
    intent_id = _ref(obj.get("payment_intent"))
    total = _int(obj.get("amount_total"))
    if obj.get("mode") == "payment" and obj.get("payment_status") == "paid" and intent_id and total is not None:
        metadata = _metadata(obj)
        user = _user_by_id(obj["client_reference_id"], using) if obj.get("client_reference_id") else None
        if user is not None and "user_id" not in metadata and "subscription_id" not in metadata:
            metadata["user_id"] = str(user.pk)
        synthetic = {
            "id": intent_id,
            "object": "payment_intent",
            "amount": total,
            "amount_received": total,
            "currency": obj.get("currency"),
            "status": PaymentIntent.Status.SUCCEEDED,
            "customer": customer,
            "metadata": metadata,
            "created": obj.get("created"),
        }
        return _apply_intent(event_id, "payment_intent.succeeded", created, synthetic, using)
    return outcome or StripeEvent.Outcome.IGNORED


def _busy(exc: OperationalError) -> bool:
    """A database too busy right now (SQLite's lock, PostgreSQL lock/serialization failures): retryable."""
    message = str(exc).lower()
    pgcode = getattr(exc.__cause__, "pgcode", None)
    return (
        "database is locked" in message
        or "database table is locked" in message
        or pgcode
        in (
            "40001",
            "40P01",
            "55P03",
        )
    )


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    signature = request.headers.get("Stripe-Signature", "")
    if not secret:
        return HttpResponseBadRequest("webhook secret not configured")
    if not signature:
        return HttpResponseBadRequest("missing Stripe-Signature header")
    # Imported here, not at the top: the URLconf imports this module, so every management command's
    # system checks would pay the stripe package's ~0.4 s import (half of backup_db's start-up).
    import stripe

    try:
        payload = request.body.decode("utf-8")
        stripe.WebhookSignature.verify_header(payload, signature, secret, stripe.Webhook.DEFAULT_TOLERANCE)
    except (UnicodeDecodeError, stripe.SignatureVerificationError):
        return HttpResponseBadRequest("invalid payload or signature")
    try:
        event = parse_event(payload)
    except BadEvent as exc:
        return HttpResponseBadRequest(f"not a Stripe event: {exc}")
    try:
        outcome = process_event(event)
    except OperationalError as exc:
        if not _busy(exc):
            raise
        log.warning("stripe webhook: database busy for %s; asking Stripe to retry", event["id"])
        response = HttpResponse("database busy, retry later", status=503, content_type="text/plain")
        response["Retry-After"] = "5"
        return response
    if outcome == StripeEvent.Outcome.REFUSED:
        return JsonResponse({"received": True, "outcome": outcome, "error": "livemode mismatch"}, status=400)
    return JsonResponse({"received": True, "outcome": outcome})
