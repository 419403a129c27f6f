"""Stripe events into ledger entries: credit purchases once, claw back refunds and disputes.

`StripeCredits.handle` reads a verified event (service/stripe_events.py), credits a paid
Checkout Session here, and hands refunds and disputes to service/stripe_clawbacks.py.
Everything goes through the one write path, `Ledger.write`, with an idempotency record in
the same transaction as the entry:

- A purchase is keyed on the payment (`idem|purchase|stripe|<payment_intent or session>`),
  kept forever. Redeliveries, both session events, concurrent deliveries and a delivery
  whose write committed before its Lambda timed out all meet that record and credit nothing.
  That record is also how a refund or dispute finds the purchase (one GetItem): never an
  index of related ids, which users choose (service/clawback.py).
- A purchase is credited only when the session's `amount_subtotal` and `currency` equal the
  catalog price of its package; otherwise `price_mismatch`: nothing credited, reported.
- Each event's record is put if absent, in the entry's transaction when it writes one
  (`EventBook`): a redelivery finds it and writes nothing.

Round trips of a purchase: one BatchGetItem (the event's record and the account, both
strongly consistent) and one TransactWriteItems (account, entry, exactly-once record, event
record). A redelivery: the BatchGetItem alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from tokenledger.domain.catalog import Catalog, Package, load_catalog
from tokenledger.domain.errors import IdempotencyKeyReused, InvariantViolation
from tokenledger.domain.model import Account, EntryDraft, EntryType
from tokenledger.domain.stripe_events import EventRecord, event_content_hash
from tokenledger.domain.stripe_outcomes import Outcome
from tokenledger.service.clawback import PURCHASE_ROUTE, STRIPE
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import GuardFailed, Ledger, single_entry_body
from tokenledger.service.ports import Clock, StripeStore
from tokenledger.service.stripe_clawbacks import StripeClawbacks
from tokenledger.service.stripe_events import (
    CHARGE_REFUNDED,
    DISPUTE_CREATED,
    SESSION_ASYNC_SUCCEEDED,
    SESSION_COMPLETED,
    EventBook,
    base_record,
    session_record,
    text_field,
)


@dataclass
class StripeCredits:
    """The use case behind `POST /v1/webhooks/stripe`, given an already verified event."""

    ledger: Ledger
    store: StripeStore
    clock: Clock
    catalog: Catalog = field(default_factory=load_catalog)

    def __post_init__(self) -> None:
        self._events = EventBook(store=self.store, clock=self.clock)
        self._clawbacks = StripeClawbacks(ledger=self.ledger, events=self._events)

    def handle(self, event: Mapping[str, Any]) -> EventRecord:
        """Apply the event (at most once) and record what it did; returns that record.

        The record returned for a redelivery is the one first written. Raises
        `StripeEventConflict` when the id was recorded for other content.
        """
        base = base_record(event)
        obj: Mapping[str, Any] = event["data"]["object"]
        content = event_content_hash(event)
        if base.type in (SESSION_COMPLETED, SESSION_ASYNC_SUCCEEDED):
            return self._purchase(base, obj, content)
        if base.type == CHARGE_REFUNDED:
            return self._clawbacks.refund(base, obj, content)
        if base.type == DISPUTE_CREATED:
            return self._clawbacks.dispute(base, obj, content)
        return self._events.finish(base, content)

    def _purchase(self, base: EventRecord, session: Mapping[str, Any], content: str) -> EventRecord:
        record = session_record(base, session)
        finish = self._events.finish
        package = self.catalog.find(record.package_id) if record.package_id is not None else None
        refusal = _refusal(base, session, record, package)
        if refusal is not None:
            return finish(refusal, content)
        payment_id = record.payment_id
        if payment_id is None or record.user_id is None or package is None:
            raise InvariantViolation("a purchase not refused has its payment, user and package")
        user = record.user_id
        existing, account = self.store.event_and_account(base.event_id, user)
        if existing is not None:  # a redelivery: nothing is written
            return self._events.same_event(existing, content)
        scope = IdempotencyScope(
            caller=STRIPE,
            route=PURCHASE_ROUTE,
            key=payment_id,
            request_hash=request_hash({"user_id": user, "package_id": package.package_id}),
        )
        entry_metadata = {"package_id": package.package_id, "stripe_event": base.event_id}
        if record.session_id is not None:
            entry_metadata["checkout_session"] = record.session_id
        draft = EntryDraft(
            type=EntryType.PURCHASE,
            amount=package.tokens,  # the catalog decides, never a number from the event
            counterparty=STRIPE,
            related_id=payment_id,
            metadata=entry_metadata,
        )
        credited = replace(record, outcome=Outcome.CREDITED)
        try:
            result = self.ledger.write(
                lambda _accounts: {user: [draft]},
                users=[user],
                scope=scope,
                body=single_entry_body(user),
                guards=self._events.entry_guards(credited, content),
                idempotency_ttl_s=None,  # payment keys are kept forever
                accounts_read={user: account or Account(user_id=user)},
            )
        except IdempotencyKeyReused:
            return finish(
                replace(
                    record,
                    outcome=Outcome.PAYMENT_CONFLICT,
                    detail="this payment was credited for another user or package",
                ),
                content,
            )
        except GuardFailed:  # the same event, delivered concurrently, recorded first
            return self._events.recorded_meanwhile(base.event_id, content)
        if not result.replayed:
            return self._events.with_entry(credited, result.body)
        # The payment was credited already: by the other session event, or by this very event
        # in a delivery racing this one. Record this event (unless that delivery did).
        by_this_event = result.body["entry"]["metadata"].get("stripe_event") == base.event_id
        outcome = Outcome.CREDITED if by_this_event else Outcome.ALREADY_CREDITED
        return finish(self._events.with_entry(replace(record, outcome=outcome), result.body), content)


def _refusal(
    base: EventRecord, session: Mapping[str, Any], record: EventRecord, package: Package | None
) -> EventRecord | None:
    """The record of a session event that credits nothing (with its outcome and detail), or None to credit it."""
    if record.payment_id is None:
        return replace(record, outcome=Outcome.INVALID_EVENT, detail="the session has no valid id")
    if base.type == SESSION_COMPLETED and session.get("payment_status") != "paid":
        status = text_field(session.get("payment_status")) or "missing"
        return replace(record, outcome=Outcome.NOT_PAID, detail=f"payment_status is {status[:40]}")
    if record.user_id is None or record.package_id is None:
        missing = [n for n, v in (("user_id", record.user_id), ("package_id", record.package_id)) if v is None]
        return replace(
            record,
            outcome=Outcome.MISSING_METADATA,
            detail=f"metadata.{' and metadata.'.join(missing)} missing or invalid",
        )
    if package is None:
        return replace(record, outcome=Outcome.UNKNOWN_PACKAGE, detail="metadata.package_id is not in the catalog")
    price = package.price
    if record.amount_subtotal != price.amount or record.currency != price.currency:
        paid = f"{record.amount_subtotal} {record.currency}"
        return replace(
            record,
            outcome=Outcome.PRICE_MISMATCH,
            detail=f"amount_subtotal and currency are {paid[:60]}, the catalog price is "
            f"{price.amount} {price.currency}",
        )
    return None
