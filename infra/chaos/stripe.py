"""Stripe as the chaos run plays it: the webhook operations, with events built and signed by infra.stripe_events.

Each delivery is signed afresh (`signature`), as Stripe does. The makers build purchases
(`checkout.session.completed` / `async_payment_succeeded`), redeliveries, refunds and disputes
of recent purchases; `infra.chaos.operations.OPERATIONS` binds them to their kinds.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

from infra.chaos.model import Op, Request
from infra.stripe_events import (
    WEBHOOK_PATH,
    charge_refunded_event,
    checkout_session,
    dispute_created_event,
    event_payload,
    local_catalog,
    stripe_event,
    stripe_signature,
)

if TYPE_CHECKING:
    from infra.chaos.operations import Chooser

CHARGE_AMOUNT = 999  # what refunds and disputes say was charged


def signature(payload: str, secret: str) -> str:
    """The `Stripe-Signature` header of `payload`, signed now with the webhook secret."""
    return stripe_signature(payload, secret)


def webhook_request(event: dict[str, Any]) -> Request:
    return Request("POST", WEBHOOK_PATH, None, None, None, raw_body=event_payload(event), stripe=True)


@functools.cache
def _catalog() -> dict[str, dict[str, Any]]:
    """The catalog's packages by id (a session of one is priced as the catalog says: the webhook checks it)."""
    return {package["package_id"]: package for package in local_catalog()}


def _serial(c: Chooser) -> str:
    return c.key().replace("-", "_")  # Stripe ids are [A-Za-z0-9_]


def _earlier_purchase(c: Chooser) -> tuple[Op, dict[str, Any]] | None:
    """One recent acknowledged purchase of any client, with what its event was about; None before any."""
    purchases = [(op, op.stripe) for op in c.workload.recent_purchases() if op.stripe is not None]
    return c.rng.choice(purchases) if purchases else None


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
    session = checkout_session(user, _catalog()[package], payment_id=serial)
    kind = c.rng.choice(("checkout.session.completed", "checkout.session.async_payment_succeeded"))
    event = stripe_event(kind, session, event_id=f"evt_{serial}")
    op = Op(c.number, number, "stripe_purchase", user, webhook_request(event), None)
    op.stripe = {"payment": session["payment_intent"], "session": session["id"], "package": package, "event": event}
    return op


def redelivery(c: Chooser, number: int) -> Op | None:
    """The same event again (Stripe retries), or the other event for the same session."""
    earlier = _earlier_purchase(c)
    if earlier is None:
        return None
    origin, about = earlier
    event = dict(about["event"])
    if c.rng.random() < 0.3:  # both "completed" and "async_payment_succeeded" for one session
        other = (
            "checkout.session.async_payment_succeeded"
            if event["type"] == "checkout.session.completed"
            else "checkout.session.completed"
        )
        # One derived id (ids are [A-Za-z0-9_]) for every redelivery of this origin, with the same
        # content: a copy made a second later would be an id resent changed (409, retried forever).
        event = stripe_event(other, event["data"]["object"], event_id=f"{event['id']}_2", created=event["created"])
    return _follow_up(c, number, "stripe_redelivery", (origin, about), event)


def refund(c: Chooser, number: int) -> Op | None:
    earlier = _earlier_purchase(c)
    if earlier is None:
        return None
    origin, about = earlier
    serial = _serial(c)
    refunded = c.rng.choice((250, 500, CHARGE_AMOUNT))
    event = charge_refunded_event(
        about["payment"], amount=CHARGE_AMOUNT, amount_refunded=refunded, event_id=f"evt_{serial}"
    )
    return _follow_up(c, number, "stripe_refund", (origin, about), event)


def dispute(c: Chooser, number: int) -> Op | None:
    earlier = _earlier_purchase(c)
    if earlier is None:
        return None
    origin, about = earlier
    serial = _serial(c)
    event = dispute_created_event(
        about["payment"], amount=CHARGE_AMOUNT, event_id=f"evt_{serial}", dispute_id=f"dp_{serial}"
    )
    return _follow_up(c, number, "stripe_dispute", (origin, about), event)
