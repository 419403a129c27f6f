"""Stripe webhook events as Stripe sends them, signed the way Stripe signs them: the one builder and signer.

For everything that plays Stripe locally: the CLI (``stripe-purchase``, ``stripe-event``...),
the local checkout, the fake Stripe, chaos, bench and the tests. The service itself verifies
with the official ``stripe`` package (``tokenledger.adapters.stripe_signature``), never with this.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import Any

STRIPE_API_VERSION = "2024-06-20"
WEBHOOK_PATH = "/v1/webhooks/stripe"


def stripe_signature(payload: bytes | str, secret: str, *, timestamp: int | None = None, scheme: str = "v1") -> str:
    """The `Stripe-Signature` header Stripe sends: `t=<unix>,v1=<HMAC-SHA256 of "t.payload">`."""
    t = int(timestamp if timestamp is not None else time.time())
    body = payload.encode() if isinstance(payload, str) else payload
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},{scheme}={digest}"


def event_payload(event: dict[str, Any]) -> str:
    """The body Stripe posts: the event as compact JSON (sign exactly these bytes)."""
    return json.dumps(event, separators=(",", ":"))


def signed_delivery(event: dict[str, Any], secret: str, *, timestamp: int | None = None) -> tuple[str, dict[str, str]]:
    """(body, headers) of one webhook delivery of `event`, signed with `secret`, as Stripe sends it."""
    payload = event_payload(event)
    headers = {
        "content-type": "application/json",
        "stripe-signature": stripe_signature(payload, secret, timestamp=timestamp),
    }
    return payload, headers


def stripe_event(
    kind: str, obj: dict[str, Any], *, event_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A Stripe event of type `kind` about `obj`. One id always has one content (Stripe never resends an id changed)."""
    return {
        "id": event_id or f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": int(created if created is not None else time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


def checkout_session(
    user: str, package: dict[str, Any], *, payment_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A paid Checkout session of one catalog package by `user` (`payment_id`: default a new one)."""
    payment = payment_id or secrets.token_hex(12)
    return {
        "id": f"cs_test_{payment}",
        "object": "checkout.session",
        "mode": "payment",
        "status": "complete",
        "payment_status": "paid",
        "amount_subtotal": package["price"]["amount"],
        "amount_total": package["price"]["amount"],
        "currency": package["price"]["currency"],
        "client_reference_id": user,
        "customer": None,
        "payment_intent": f"pi_{payment}",
        "created": int(created if created is not None else time.time()),
        "livemode": False,
        "metadata": {"user_id": user, "package_id": package["package_id"]},
    }


def checkout_completed_event(
    user: str, package: dict[str, Any], *, now: int | None = None, payment_id: str | None = None
) -> dict[str, Any]:
    """A `checkout.session.completed` event as Stripe sends it, paid, for one package.

    `payment_id` names the payment (Stripe credits once per payment); default a new one.
    """
    created = int(now if now is not None else time.time())
    session = checkout_session(user, package, payment_id=payment_id, created=created)
    return stripe_event("checkout.session.completed", session, created=created)


def charge_id(payment_id: str) -> str:
    """The charge of a payment intent, as the local Stripe events name it."""
    return "ch_" + payment_id.removeprefix("pi_")


def charge_refunded_event(
    payment_id: str, *, amount: int, amount_refunded: int, event_id: str | None = None
) -> dict[str, Any]:
    """`charge.refunded` for the charge of a payment: `amount_refunded` is cumulative, as Stripe sends it."""
    charge = {
        "id": charge_id(payment_id),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "currency": "usd",
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": payment_id,
        "refunded": amount_refunded == amount,
        "status": "succeeded",
    }
    return stripe_event("charge.refunded", charge, event_id=event_id)


def dispute_created_event(
    payment_id: str, *, amount: int, event_id: str | None = None, dispute_id: str | None = None
) -> dict[str, Any]:
    """`charge.dispute.created` for the charge of a payment (the whole amount disputed)."""
    dispute = {
        "id": dispute_id or f"dp_{secrets.token_hex(12)}",
        "object": "dispute",
        "amount": amount,
        "charge": charge_id(payment_id),
        "currency": "usd",
        "livemode": False,
        "metadata": {},
        "payment_intent": payment_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    return stripe_event("charge.dispute.created", dispute, event_id=event_id)


def local_catalog() -> list[dict[str, Any]]:
    """The catalog's packages as plain dicts (what the events above are priced from)."""
    from tokenledger.domain.catalog import load_catalog

    return [p.as_dict() for p in load_catalog().packages]
