"""Stripe webhooks: `payment_intent.*` events update our `PaymentIntent` rows.

- The signature is verified with `stripe.Webhook.construct_event` against STRIPE_WEBHOOK_SECRET;
  no secret configured, no header, or a bad signature: 400 and nothing written.
- Idempotent on the event id: each processed event is a `StripeEvent` row (unique event id), written
  in the same transaction as its effects, so a redelivered event changes nothing.
- Ordering: an event older than the last one applied to the intent is recorded but not applied, and
  an intent in a final status (succeeded, canceled) never moves to another status.
- A succeeded intent earns loyalty points once (loyalty.ledger.earn_for_payment is idempotent per intent).
- No card data: only ids, amounts, status, the failure code and message, and merchant metadata.
"""

from __future__ import annotations

import datetime
import json
import logging
from decimal import Decimal

import stripe
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.models import F
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.models import PaymentIntent, StripeEvent, Subscription
from billing.pricing import active_config
from loyalty import ledger

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


def _status(event_type: str, obj: dict) -> str | None:
    status = obj.get("status") or STATUS_BY_EVENT.get(event_type)
    return status if status in PaymentIntent.Status.values else None


def _points_per_unit(intent: PaymentIntent, using: str) -> Decimal | None:
    """Points per currency unit: the subscription's pricing config, else the config in effect then."""
    subscription = intent.subscription
    if subscription is None:
        return None
    config = subscription.pricing_config
    if config is None:
        config = active_config(subscription.plan, subscription.variant_id, intent.succeeded_at, using=using)
    return config.loyalty_points_per_unit if config else None


def _resolve_owner(obj: dict, using: str) -> tuple[object | None, int | None]:
    """(user_id, subscription_id) for a new intent from its metadata (`subscription_id`, `user_id`)."""
    metadata = obj.get("metadata") or {}
    subscription = None
    if str(metadata.get("subscription_id", "")).isdigit():
        subscription = Subscription.objects.using(using).filter(pk=int(metadata["subscription_id"])).first()
    if subscription is not None:
        return subscription.user_id, subscription.pk
    user_id = metadata.get("user_id")
    if user_id:
        from django.contrib.auth import get_user_model

        try:
            if get_user_model().objects.using(using).filter(pk=user_id).exists():
                return user_id, None
        except (ValueError, TypeError):  # a malformed id is no user; the event is recorded as ignored
            log.warning("stripe webhook: malformed user_id %r in metadata", user_id)
    return None, None


def process_event(event: dict, *, using: str = DEFAULT_DB_ALIAS) -> str:
    """Apply one verified event; returns the outcome ('applied', 'stale', 'ignored' or 'duplicate')."""
    event_id, event_type = event["id"], event.get("type", "")
    created = datetime.datetime.fromtimestamp(int(event["created"]), tz=datetime.UTC)
    obj = (event.get("data") or {}).get("object") or {}
    with transaction.atomic(using=using):
        record, fresh = StripeEvent.objects.using(using).get_or_create(
            event_id=event_id,
            defaults={
                "type": event_type,
                "created": created,
                "outcome": StripeEvent.Outcome.IGNORED,
                "stripe_payment_intent_id": obj.get("id", "") if event_type.startswith("payment_intent.") else "",
            },
        )
        if not fresh:
            return "duplicate"
        outcome = _apply(event_id, event_type, created, obj, using)
        if outcome != record.outcome:
            record.outcome = outcome
            record.save(using=using, update_fields=["outcome"])
        return outcome


def _apply(event_id: str, event_type: str, created: datetime.datetime, obj: dict, using: str) -> str:
    status = _status(event_type, obj)
    if not event_type.startswith("payment_intent.") or obj.get("object") != "payment_intent" or not status:
        return StripeEvent.Outcome.IGNORED
    intents = PaymentIntent.objects.using(using)
    intent = intents.select_for_update().filter(stripe_payment_intent_id=obj["id"]).first()
    previous = intent.status if intent is not None else None
    if intent is None:
        user_id, subscription_id = _resolve_owner(obj, using)
        if user_id is None:
            log.warning("stripe webhook: %s for unknown intent %s has no known user; ignored", event_id, obj["id"])
            return StripeEvent.Outcome.IGNORED
        intent, _ = intents.get_or_create(
            stripe_payment_intent_id=obj["id"],
            defaults={
                "user_id": user_id,
                "subscription_id": subscription_id,
                "amount": int(obj.get("amount") or 0),
                "status": status,
                "created_at": datetime.datetime.fromtimestamp(
                    int(obj.get("created") or created.timestamp()), datetime.UTC
                ),
            },
        )
        intent = intents.select_for_update().get(pk=intent.pk)
    elif intent.last_event_created and created < intent.last_event_created:
        return StripeEvent.Outcome.STALE
    if intent.status in PaymentIntent.FINAL_STATUSES and status != intent.status:
        return StripeEvent.Outcome.STALE
    became_succeeded = status == PaymentIntent.Status.SUCCEEDED and previous != status
    error = obj.get("last_payment_error") or {}
    intent.status = status
    intent.amount = int(obj.get("amount") or intent.amount)
    intent.amount_received = int(obj.get("amount_received") or 0)
    intent.currency = (obj.get("currency") or intent.currency)[:3]
    intent.failure_code = (error.get("decline_code") or error.get("code") or "")[:64]
    intent.failure_message = error.get("message") or ""
    intent.metadata = {str(k): str(v) for k, v in (obj.get("metadata") or {}).items()}
    intent.last_event_id = event_id
    intent.last_event_created = created
    if became_succeeded:
        intent.succeeded_at = created
    intent.save(using=using)
    if became_succeeded:
        ppu = _points_per_unit(intent, using)
        entry = ledger.earn_for_payment(intent, ppu, using=using) if ppu else None
        if entry is not None and intent.subscription_id:
            Subscription.objects.using(using).filter(pk=intent.subscription_id).update(
                points_earned=F("points_earned") + entry.points
            )
    return StripeEvent.Outcome.APPLIED


@csrf_exempt
@require_POST
def stripe_webhook(request) -> HttpResponse:
    secret = settings.STRIPE_WEBHOOK_SECRET
    signature = request.headers.get("Stripe-Signature", "")
    if not secret:
        return HttpResponseBadRequest("webhook secret not configured")
    if not signature:
        return HttpResponseBadRequest("missing Stripe-Signature header")
    try:
        stripe.Webhook.construct_event(request.body, signature, secret)
        event = json.loads(request.body)
    except (ValueError, stripe.SignatureVerificationError):
        return HttpResponseBadRequest("invalid payload or signature")
    if not isinstance(event, dict) or not event.get("id") or not str(event.get("created", "")).isdigit():
        return HttpResponseBadRequest("not a Stripe event")
    outcome = process_event(event)
    return JsonResponse({"received": True, "outcome": outcome})
