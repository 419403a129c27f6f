"""A Stripe purchase, found through keys only the service writes, and its clawback level.

Both the Stripe webhook (refunds, disputes) and an admin reversal of a purchase take tokens
back from one purchase. Between them a purchase is clawed back at most once in total, so both
move the same *clawback level*: a chain of step items in the idempotency table
(`stripe-clawback|<payment>|<from level>` -> `to`), each put if absent in the same
transaction as the entry that takes the tokens. Two clawbacks can never both start from one
level; the loser reads the new level and takes only what is still due.

The purchase of a payment is found through its exactly-once record
(`idem|purchase|stripe|<payment>`, one strongly consistent GetItem), never through the
`by-related-id` index: related ids are the user's words (a commitment may name a
prediction `pi_...`), so nothing a user writes can hide or impersonate a purchase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from tokenledger.domain.errors import InvariantViolation
from tokenledger.service.idempotency import IdempotencyScope
from tokenledger.service.ports import StoredResponse

STRIPE = "stripe"  # the counterparty on every Stripe entry, and the idempotency caller
PURCHASE_ROUTE = "purchase"
CLAWBACK_STEP_PREFIX = "stripe-clawback"
CLAWBACK_STEPS_MAX = 100  # clawback steps of one purchase (each needs a refund that moves the level)
CLAWBACK_ATTEMPTS_MAX = 6  # rounds lost to other clawbacks of the same purchase before giving up
CLAWBACK_STEP_GUARD = "clawback_step"


class ClawbackReads(Protocol):
    def get_idempotency(self, pk: str) -> StoredResponse | None: ...

    def get_guard(self, pk: str) -> dict[str, Any] | None: ...


@dataclass(frozen=True, slots=True)
class StripePurchase:
    """The purchase entry a payment credited, as its exactly-once record remembers it."""

    payment_id: str
    user_id: str
    entry_id: str
    tokens: int
    package_id: str | None


def purchase_record_pk(payment_id: str) -> str:
    """The key of a payment's exactly-once record (`IdempotencyScope.pk` of the purchase)."""
    return IdempotencyScope(caller=STRIPE, route=PURCHASE_ROUTE, key=payment_id, request_hash="").pk


def find_purchase(reads: ClawbackReads, payment_id: str) -> StripePurchase | None:
    """The payment's purchase, or None if it was never credited: one GetItem, no index."""
    stored = reads.get_idempotency(purchase_record_pk(payment_id))
    if stored is None:
        return None
    entry = stored.body.get("entry")
    if not isinstance(entry, dict) or entry.get("type") != "purchase" or entry.get("counterparty") != STRIPE:
        raise InvariantViolation(f"the exactly-once record of payment {payment_id} does not hold a Stripe purchase")
    metadata = entry.get("metadata") or {}
    return StripePurchase(
        payment_id=payment_id,
        user_id=str(entry["user_id"]),
        entry_id=str(entry["entry_id"]),
        tokens=int(entry["amount"]),
        package_id=metadata.get("package_id") if isinstance(metadata, dict) else None,
    )


def clawback_step_pk(payment_id: str, from_level: int) -> str:
    return f"{CLAWBACK_STEP_PREFIX}|{payment_id}|{from_level}"


def clawback_level(reads: ClawbackReads, payment_id: str) -> tuple[int, str]:
    """The purchase's clawback level now, and the step item the next clawback must create."""
    level = 0
    for _ in range(CLAWBACK_STEPS_MAX):
        step_pk = clawback_step_pk(payment_id, level)
        step = reads.get_guard(step_pk)
        if step is None:
            return level, step_pk
        moved_to = step.get("to")
        if not isinstance(moved_to, int) or moved_to <= level:
            raise InvariantViolation(f"clawback step {step_pk} does not move the level up")
        level = moved_to
    raise InvariantViolation(f"payment {payment_id} has more than {CLAWBACK_STEPS_MAX} clawback steps")
