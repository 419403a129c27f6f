"""Stripe as the chaos run plays it: test events, their signature, and the webhook operations.

`stripe_event` is the one builder of a Stripe event in the package and `signature` the one
signer (each delivery is signed afresh, as Stripe does). The makers build purchases
(`checkout.session.completed` / `async_payment_succeeded`), redeliveries, refunds and disputes
of recent purchases; `infra.chaos.operations.OPERATIONS` binds them to their kinds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import TYPE_CHECKING, Any

from infra.chaos.model import Op, Request

if TYPE_CHECKING:
    from infra.chaos.operations import Chooser

WEBHOOK_PATH = "/v1/webhooks/stripe"


def stripe_event(event_id: str, kind: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """A Stripe event; one id always has one content (Stripe never resends an id changed)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "type": kind,
        "data": {"object": obj},
    }


def signature(payload: str, secret: str) -> str:
    """The `Stripe-Signature` header of `payload`, signed now with the webhook secret."""
    timestamp = int(time.time())
    signed = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={signed}"


def webhook_request(event: dict[str, Any]) -> Request:
    payload = json.dumps(event, separators=(",", ":"))
    return Request("POST", WEBHOOK_PATH, None, None, None, raw_body=payload, stripe=True)


def _catalog_price(package_id: str) -> dict[str, Any]:
    """What Stripe reports for a session of the package at its catalog price (the webhook checks it)."""
    from tokenledger.domain.catalog import load_catalog

    found = load_catalog().find(package_id)
    if found is None:
        raise ValueError(f"no package {package_id} in the catalog")
    amount = found.price.amount
    return {"amount_subtotal": amount, "amount_total": amount, "currency": found.price.currency}


def _serial(c: Chooser) -> str:
    return c.key().replace("-", "_")  # Stripe ids are [A-Za-z0-9_]


def _purchases(c: Chooser) -> list[tuple[Op, dict[str, Any]]]:
    """Recent acknowledged purchases of any client, each with what its event was about."""
    return [(op, op.stripe) for op in c.workload.recent_purchases() if op.stripe is not None]


def _follow_up(c: Chooser, number: int, kind: str, purchase: tuple[Op, dict[str, Any]], event: dict[str, Any]) -> Op:
    """A webhook delivery about an earlier purchase (its origin)."""
    origin, about = purchase
    op = Op(c.number, number, kind, origin.user_id, webhook_request(event), None)
    op.origin = origin
    op.stripe = dict(about)
    return op


def purchase(c: Chooser, number: int) -> Op:
    user = c.user()
    serial = _serial(c)
    package = c.rng.choice(c.workload.packages)
    payment = f"pi_{serial}"
    session = {
        "id": f"cs_{serial}",
        "object": "checkout.session",
        "payment_status": "paid",
        "payment_intent": payment,
        **_catalog_price(package),
        "client_reference_id": user,
        "metadata": {"user_id": user, "package_id": package},
    }
    kind = c.rng.choice(("checkout.session.completed", "checkout.session.async_payment_succeeded"))
    event = stripe_event(f"evt_{serial}", kind, session)
    op = Op(c.number, number, "stripe_purchase", user, webhook_request(event), None)
    op.stripe = {"payment": payment, "session": session["id"], "package": package, "event": event}
    return op


def redelivery(c: Chooser, number: int) -> Op | None:
    """The same event again (Stripe retries), or the other event for the same session."""
    purchases = _purchases(c)
    if not purchases:
        return None
    origin, about = c.rng.choice(purchases)
    event = dict(about["event"])
    if c.rng.random() < 0.3:  # both "completed" and "async_payment_succeeded" for one session
        other = (
            "checkout.session.async_payment_succeeded"
            if event["type"] == "checkout.session.completed"
            else "checkout.session.completed"
        )
        # One derived id (ids are [A-Za-z0-9_]) for every redelivery of this origin, with the same
        # content: a copy made a second later would be an id resent changed (409, retried forever).
        event = stripe_event(f"{event['id']}_2", other, event["data"]["object"], created=event["created"])
    return _follow_up(c, number, "stripe_redelivery", (origin, about), event)


def refund(c: Chooser, number: int) -> Op | None:
    purchases = _purchases(c)
    if not purchases:
        return None
    origin, about = c.rng.choice(purchases)
    serial = _serial(c)
    refunded = c.rng.choice((250, 500, 999))
    charge = {
        "id": f"ch_{about['payment']}",
        "object": "charge",
        "payment_intent": about["payment"],
        "amount": 999,
        "amount_captured": 999,
        "amount_refunded": refunded,
        "currency": "usd",
        "refunded": refunded == 999,
        "metadata": {"user_id": origin.user_id, "package_id": about["package"]},
    }
    event = stripe_event(f"evt_{serial}", "charge.refunded", charge)
    return _follow_up(c, number, "stripe_refund", (origin, about), event)


def dispute(c: Chooser, number: int) -> Op | None:
    purchases = _purchases(c)
    if not purchases:
        return None
    origin, about = c.rng.choice(purchases)
    serial = _serial(c)
    disputed = {
        "id": f"dp_{serial}",
        "object": "dispute",
        "charge": f"ch_{about['payment']}",
        "payment_intent": about["payment"],
        "amount": 999,
        "currency": "usd",
        "reason": "fraudulent",
        "status": "needs_response",
    }
    event = stripe_event(f"evt_{serial}", "charge.dispute.created", disputed)
    return _follow_up(c, number, "stripe_dispute", (origin, about), event)
