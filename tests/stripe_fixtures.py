"""Stripe's own object shapes (tests/fixtures/stripe/, see its README), signed as Stripe signs them."""

from __future__ import annotations

import copy
import functools
import hashlib
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"
SECRET = "whsec_test_secret"
URL = "/webhooks/stripe/"


@functools.cache
def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def obj(name: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of fixture `name` with top-level fields replaced."""
    data = copy.deepcopy(_load(name))
    data.update(changes)
    return data


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def intent(status: str = "requires_payment_method", *, amount: int = 2000, **changes: Any) -> dict[str, Any]:
    """A payment_intent in `status`; amount_received follows Stripe (the amount once succeeded)."""
    changes.setdefault("amount_received", amount if status == "succeeded" else 0)
    return obj("payment_intent", status=status, amount=amount, **changes)


def event(event_type: str, data_object: dict[str, Any], created: int | None = None, **changes: Any) -> dict[str, Any]:
    """The event envelope around `data_object`, with a fresh event id."""
    envelope = obj("event", id=new_id("evt"), type=event_type, **changes)
    envelope["created"] = int(time.time()) if created is None else created
    envelope["data"] = {"object": data_object}
    return envelope


def sign(payload: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """The Stripe-Signature header: t=<ts>,v1=<hex hmac_sha256(secret, "<ts>." + payload)>."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def body(payload: Any) -> bytes:
    return payload if isinstance(payload, bytes) else json.dumps(payload).encode()


def post(client, payload: Any, secret: str = SECRET):
    """POST a signed payload (any JSON value, or raw bytes) to the webhook with Django's test client."""
    raw = body(payload)
    return client.post(URL, data=raw, content_type="application/json", HTTP_STRIPE_SIGNATURE=sign(raw, secret))
