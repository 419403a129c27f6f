"""What processing one Stripe event did, as its event record stores it (docs/stripe.md).

Shared by the webhook's use case (which records it) and the reconciliation (which reads it).
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What processing one Stripe event did (stored on its event record)."""

    CREDITED = "credited"  # this event wrote the purchase entry
    ALREADY_CREDITED = "already_credited"  # the payment was credited by another event (the other session event)
    NOT_PAID = "not_paid"  # checkout.session.completed with payment_status != "paid"
    UNKNOWN_PACKAGE = "unknown_package"  # metadata.package_id is not in the catalog
    MISSING_METADATA = "missing_metadata"  # metadata.user_id or metadata.package_id missing or malformed
    PAYMENT_CONFLICT = "payment_conflict"  # the payment was credited for another (user, package)
    PRICE_MISMATCH = "price_mismatch"  # amount_subtotal/currency differ from the package's catalog price
    INVALID_EVENT = "invalid_event"  # signed, but lacks a field this type needs (ids, amounts)
    CLAWED_BACK = "clawed_back"  # this event wrote a chargeback entry
    NOTHING_DUE = "nothing_due"  # the clawback level already covers this event (later refund first, rounding)
    PURCHASE_NOT_CREDITED = "purchase_not_credited"  # refund/dispute of a payment deliberately not credited
    PURCHASE_NOT_FOUND = "purchase_not_found"  # refund/dispute before its purchase is recorded: 409, retried
    NOT_A_PURCHASE = "not_a_purchase"  # charge/dispute without a payment intent: not a Checkout payment
    IGNORED = "ignored"  # an event type this endpoint does not act on


NOT_CREDITED = frozenset(
    {
        Outcome.NOT_PAID,
        Outcome.UNKNOWN_PACKAGE,
        Outcome.MISSING_METADATA,
        Outcome.PAYMENT_CONFLICT,
        Outcome.PRICE_MISMATCH,
    }
)
# A payment whose records show one of these and never a credit will not get a purchase entry.
REFUSED_PAYMENT = frozenset({Outcome.UNKNOWN_PACKAGE, Outcome.MISSING_METADATA, Outcome.PRICE_MISMATCH})
# Outcomes whose payment got its purchase entry (by this event or the other session event).
CREDITING = frozenset({Outcome.CREDITED, Outcome.ALREADY_CREDITED})
