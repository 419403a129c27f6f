"""Stripe refunds and disputes: take a purchase's tokens back, once, never below zero.

A clawback moves the purchase's *clawback level* (tokens taken back so far, recovered or
not, by Stripe events or by an admin reversal of the purchase) up to the event's target.
The level is a chain of step items in the idempotency table
(`stripe-clawback|<payment>|<from level>`, service/clawback.py), each put if absent in the
same transaction as its entry, so two clawbacks of one purchase can never both start from
the same level. Each event is also keyed on itself (refund: charge and cumulative amount;
dispute: dispute id) so the same refund sent as two events takes back once.

Rounding (refunds): the level after a refund is
`floor(purchase_tokens * amount_refunded / charge_amount)`, on the cumulative
`amount_refunded`. It never takes more than the refunded share, partial refunds add up to
exactly the purchase at a full refund (the floor of `tokens * amount / amount` is `tokens`),
and the order refunds arrive in does not change the total. A dispute sets the level to the
whole purchase.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from tokenledger.domain.errors import ContentionExhausted, InvariantViolation
from tokenledger.domain.model import Account, EntryDraft, EntryType
from tokenledger.domain.stripe_events import EventRecord
from tokenledger.domain.stripe_outcomes import REFUSED_PAYMENT, Outcome
from tokenledger.service.clawback import (
    CLAWBACK_ATTEMPTS_MAX,
    CLAWBACK_STEP_GUARD,
    STRIPE,
    clawback_level,
    find_purchase,
)
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import GuardFailed, Ledger, single_entry_body
from tokenledger.service.ports import STRIPE_EVENT_GUARD, Guard
from tokenledger.service.stripe_events import EventBook, charge_record, dispute_record

CHARGEBACK_ROUTE = "chargeback"


def refund_clawback_level(purchase_tokens: int, amount_refunded: int, charge_amount: int) -> int:
    """Tokens taken back in total once `amount_refunded` of `charge_amount` is refunded (floor)."""
    if charge_amount <= 0 or not 0 <= amount_refunded <= charge_amount or purchase_tokens <= 0:
        raise InvariantViolation("refund proportions need 0 <= refunded <= amount, amount > 0, tokens > 0")
    return purchase_tokens * amount_refunded // charge_amount


@dataclass
class StripeClawbacks:
    """`charge.refunded` and `charge.dispute.created`, through the one write path."""

    ledger: Ledger
    events: EventBook

    def refund(self, base: EventRecord, charge: Mapping[str, Any], content: str) -> EventRecord:
        record = charge_record(base, charge)
        unidentified = self._unidentified(record, record.charge_id, "charge", content)
        if unidentified is not None:
            return unidentified
        amount, refunded = record.amount, record.amount_refunded
        if amount is None or refunded is None or amount <= 0 or not 0 <= refunded <= amount:
            return self.events.finish(
                replace(record, outcome=Outcome.INVALID_EVENT, detail="amount and amount_refunded do not fit"), content
            )
        return self._claw_back(
            record,
            content,
            key=f"refund:{record.charge_id}:{refunded}",
            target=lambda tokens: refund_clawback_level(tokens, refunded, amount),
        )

    def dispute(self, base: EventRecord, dispute: Mapping[str, Any], content: str) -> EventRecord:
        record = dispute_record(base, dispute)
        unidentified = self._unidentified(record, record.dispute_id, "dispute", content)
        if unidentified is not None:
            return unidentified
        return self._claw_back(record, content, key=f"dispute:{record.dispute_id}", target=lambda tokens: tokens)

    def _unidentified(self, record: EventRecord, own_id: str | None, what: str, content: str) -> EventRecord | None:
        """The finished record of a charge or dispute event without its own id or its payment, else None."""
        if own_id is None:
            return self.events.finish(
                replace(record, outcome=Outcome.INVALID_EVENT, detail=f"the {what} has no valid id"), content
            )
        if record.payment_id is None:
            return self.events.finish(
                replace(record, outcome=Outcome.NOT_A_PURCHASE, detail=f"the {what} has no payment intent"), content
            )
        return None

    # One return per outcome of a clawback (redelivery, not credited, not found, replay, nothing due, ...).
    def _claw_back(self, record: EventRecord, content: str, *, key: str, target: Callable[[int], int]) -> EventRecord:  # noqa: PLR0911
        payment_id = record.payment_id
        if payment_id is None:
            raise InvariantViolation("a clawback needs the payment")
        existing = self.events.store.stored_event(record.event_id)
        if existing is not None:  # a redelivery: nothing is written
            return self.events.same_event(existing, content)
        # The payment's purchase through its exactly-once record: one GetItem, nothing a user writes.
        purchase = find_purchase(self.ledger.repo, payment_id)
        if purchase is None:
            outcomes = self.events.store.payment_outcomes(payment_id)
            if outcomes & REFUSED_PAYMENT and Outcome.CREDITED not in outcomes:
                return self.events.finish(
                    replace(record, outcome=Outcome.PURCHASE_NOT_CREDITED, detail="the payment was never credited"),
                    content,
                )
            return replace(record, outcome=Outcome.PURCHASE_NOT_FOUND, detail="no purchase entry for this payment yet")
        user = purchase.user_id
        level_target = target(purchase.tokens)
        record = replace(record, user_id=user, package_id=purchase.package_id)
        scope = IdempotencyScope(
            caller=STRIPE,
            route=CHARGEBACK_ROUTE,
            key=key,
            request_hash=request_hash({"purchase": purchase.entry_id, "level": level_target}),
        )
        clawed = replace(record, outcome=Outcome.CLAWED_BACK, clawback_level=level_target)
        stored = self.ledger.repo.get_idempotency(scope.pk)
        if stored is not None:  # the same refund or dispute, sent again as another event
            return self.events.finish(self.events.with_entry(clawed, scope.check_replay(stored).body), content)
        for _ in range(CLAWBACK_ATTEMPTS_MAX):
            level, step_pk = clawback_level(self.ledger.repo, payment_id)
            due = level_target - level
            if due <= 0:
                return self.events.finish(replace(record, outcome=Outcome.NOTHING_DUE, clawback_level=level), content)
            step = Guard(
                name=CLAWBACK_STEP_GUARD,
                pk=step_pk,
                attributes={"to": level_target, "from": level, "event_id": record.event_id, "payment_id": payment_id},
            )
            try:
                result = self.ledger.write(
                    _chargeback_plan(user, due, payment_id, record.event_id),
                    users=[user],
                    scope=scope,
                    body=single_entry_body(user),
                    guards=self.events.entry_guards(clawed, content, also=[step]),
                    idempotency_ttl_s=None,
                )
            except GuardFailed as failed:
                if STRIPE_EVENT_GUARD in failed.names:  # the same event, delivered concurrently, recorded first
                    return self.events.recorded_meanwhile(record.event_id, content)
                continue  # another clawback of this purchase took that step first: read the new level
            if result.replayed:  # the same refund as another event, concurrently
                return self.events.finish(self.events.with_entry(clawed, result.body), content)
            return self.events.with_entry(clawed, result.body)
        raise ContentionExhausted(f"other clawbacks of payment {payment_id} kept moving its level; Stripe will retry")


def _chargeback_plan(
    user: str, due: int, payment_id: str, event_id: str
) -> Callable[[Mapping[str, Account]], dict[str, list[EntryDraft]]]:
    """Take back `due` tokens, as much as the balance holds now; the rest is `unrecovered`."""

    def plan(accounts: Mapping[str, Account]) -> dict[str, list[EntryDraft]]:
        recovered = min(due, accounts[user].balance)
        draft = EntryDraft(
            type=EntryType.CHARGEBACK,
            amount=-recovered,
            counterparty=STRIPE,
            related_id=payment_id,
            metadata={"stripe_event": event_id},
            unrecovered=due - recovered if recovered < due else None,
        )
        return {user: [draft]}

    return plan
