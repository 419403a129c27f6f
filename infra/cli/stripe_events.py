"""Stripe webhook events as Stripe sends them, signed the way Stripe signs them (for local runs and tests)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any

STRIPE_API_VERSION = "2024-06-20"


def stripe_signature(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends: `t=<unix>,v1=<HMAC-SHA256 of "t.payload">`."""
    t = int(timestamp if timestamp is not None else time.time())
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def checkout_completed_event(
    user: str, package: dict[str, Any], *, now: int | None = None, payment_id: str | None = None
) -> dict[str, Any]:
    """A `checkout.session.completed` event as Stripe sends it, paid, for one package.

    `payment_id` names the payment (Stripe credits once per payment); default a new one.
    """
    created = int(now if now is not None else time.time())
    payment = payment_id or secrets.token_hex(12)
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
        "data": {
            "object": {
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
                "created": created,
                "livemode": False,
                "metadata": {"user_id": user, "package_id": package["package_id"]},
            }
        },
    }


def _event(kind: str, obj: dict[str, Any], *, now: int | None = None) -> dict[str, Any]:
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": int(now if now is not None else time.time()),
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
        "data": {"object": obj},
    }


def _charge_id(payment_id: str) -> str:
    return "ch_" + payment_id.removeprefix("pi_")


def charge_refunded_event(payment_id: str, *, amount: int, amount_refunded: int) -> dict[str, Any]:
    """`charge.refunded` for the charge of a payment: `amount_refunded` is cumulative, as Stripe sends it."""
    charge = {
        "id": _charge_id(payment_id),
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
    return _event("charge.refunded", charge)


def dispute_created_event(payment_id: str, *, amount: int) -> dict[str, Any]:
    """`charge.dispute.created` for the charge of a payment (the whole amount disputed)."""
    dispute = {
        "id": f"dp_{secrets.token_hex(12)}",
        "object": "dispute",
        "amount": amount,
        "charge": _charge_id(payment_id),
        "currency": "usd",
        "livemode": False,
        "metadata": {},
        "payment_intent": payment_id,
        "reason": "fraudulent",
        "status": "needs_response",
    }
    return _event("charge.dispute.created", dispute)


def local_catalog() -> list[dict[str, Any]]:
    from tokenledger.domain.catalog import load_catalog

    return [p.model_dump() for p in load_catalog().packages]
