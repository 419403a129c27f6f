"""A verified Stripe event read into a record, and that record written once.

Reading: the event's id and type are checked (anything else never becomes a key), and the
fields each handled type needs are read from its object into an `EventRecord`
(`session_record`, `charge_record`, `dispute_record`); numbers from the event never decide
how many tokens move.

Recording (`EventBook`): each event's record (Stripe events table, keyed on the event id) is
put if absent: in the same transaction as the entry when the event writes one
(`entry_guards`), alone otherwise (`finish`). A redelivery finds it and writes nothing; the
same id with other content is refused (`stripe_event_conflict`), never recorded over the first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from tokenledger.domain.errors import InvariantViolation, LedgerError, ValidationFailed
from tokenledger.domain.model import ID_CHARS_MAX, ID_PATTERN, Entry
from tokenledger.domain.stripe_events import EventRecord, StoredEvent
from tokenledger.domain.stripe_outcomes import NOT_CREDITED, Outcome
from tokenledger.service.ports import Guard, StripeStore

SESSION_COMPLETED = "checkout.session.completed"
SESSION_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"

EVENT_ID_CHARS_MAX = 255
# Stripe's event ids are `evt_` and letters/digits; anything else never becomes a key.
_EVENT_ID = re.compile(rf"^evt_[A-Za-z0-9_]{{1,{EVENT_ID_CHARS_MAX - 4}}}$")
EVENT_TYPE_CHARS_MAX = 100
_EVENT_TYPE = re.compile(rf"^[a-z0-9_.]{{1,{EVENT_TYPE_CHARS_MAX}}}$")
_STRIPE_ID = re.compile(rf"^[A-Za-z0-9_]{{1,{ID_CHARS_MAX}}}$")
_USER_ID = re.compile(ID_PATTERN)
_PACKAGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
CURRENCY_CHARS_MAX = 8


class StripeEventConflict(LedgerError):
    """The same event id arrived again with other content: the first record stands."""

    code = "stripe_event_conflict"
    title = "Stripe event already recorded with other content"


class PurchaseNotRecorded(LedgerError):
    """A refund or dispute arrived before its purchase: answered non-2xx so Stripe retries later."""

    code = "purchase_not_recorded"
    title = "Purchase not recorded yet"


# ---------------------------------------------------------------------- reading an event
def check_event_id(value: Any) -> str:
    """A Stripe event id (`evt_` and letters, digits, underscores; at most 255 characters), else 422."""
    if not isinstance(value, str) or not _EVENT_ID.fullmatch(value):
        raise ValidationFailed(
            "the event id is not a Stripe event id",
            errors=[{"loc": ["body", "id"], "type": "invalid"}],
        )
    return value


def base_record(event: Mapping[str, Any]) -> EventRecord:
    """The record every event gets (outcome `ignored` until a handler says otherwise); 422 on a bad id or type."""
    event_id = check_event_id(event.get("id"))
    event_type = event.get("type")
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise ValidationFailed("the event type is not a Stripe event type", errors=[{"loc": ["body", "type"]}])
    return EventRecord(
        event_id=event_id,
        type=event_type,
        outcome=Outcome.IGNORED,
        livemode=event.get("livemode") is True,
        stripe_created=int_field(event.get("created")),
    )


def text_field(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def int_field(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stripe_id(value: Any) -> str | None:
    """An id field, which Stripe sends as a string or, when expanded, as an object with `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    text = text_field(value)
    return text if text is not None and _STRIPE_ID.fullmatch(text) else None


def _currency(value: Any) -> str | None:
    text = text_field(value)
    return text[:CURRENCY_CHARS_MAX] if text else None


def session_record(base: EventRecord, session: Mapping[str, Any]) -> EventRecord:
    """A Checkout Session event's fields: the payment, the amounts, and the metadata's user and package."""
    session_id = stripe_id(session.get("id"))
    raw_metadata = session.get("metadata")
    metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
    user_id, package_id = text_field(metadata.get("user_id")), text_field(metadata.get("package_id"))
    return replace(
        base,
        session_id=session_id,
        payment_id=stripe_id(session.get("payment_intent")) or session_id,
        amount=int_field(session.get("amount_total")),
        amount_subtotal=int_field(session.get("amount_subtotal")),
        currency=_currency(session.get("currency")),
        user_id=user_id if user_id and _USER_ID.fullmatch(user_id) else None,
        package_id=package_id if package_id and _PACKAGE_ID.fullmatch(package_id) else None,
    )


def charge_record(base: EventRecord, charge: Mapping[str, Any]) -> EventRecord:
    """A `charge.refunded` event's fields: the charge, its payment, amount and cumulative refund."""
    return replace(
        base,
        charge_id=stripe_id(charge.get("id")),
        payment_id=stripe_id(charge.get("payment_intent")),
        amount=int_field(charge.get("amount")),
        amount_refunded=int_field(charge.get("amount_refunded")),
        currency=_currency(charge.get("currency")),
    )


def dispute_record(base: EventRecord, dispute: Mapping[str, Any]) -> EventRecord:
    """A `charge.dispute.created` event's fields: the dispute, its charge and payment."""
    return replace(
        base,
        dispute_id=stripe_id(dispute.get("id")),
        charge_id=stripe_id(dispute.get("charge")),
        payment_id=stripe_id(dispute.get("payment_intent")),
        amount=int_field(dispute.get("amount")),
        currency=_currency(dispute.get("currency")),
    )


def outcome_metrics(record: EventRecord) -> list[tuple[str, int]]:
    """The metrics one processed event adds (names are a fixed, small set)."""
    metrics = [("StripeEvents", 1)]
    if record.outcome in NOT_CREDITED or record.outcome is Outcome.INVALID_EVENT:
        metrics.append(("StripePurchasesNotCredited", 1))
    if record.outcome is Outcome.PRICE_MISMATCH:
        metrics.append(("StripePriceMismatches", 1))
    if record.outcome is Outcome.CREDITED:
        metrics.append(("StripePurchasesCredited", 1))
    if record.outcome is Outcome.CLAWED_BACK:
        metrics.append(("StripeClawbacks", 1))
        if record.unrecovered:
            metrics.append(("StripeTokensUnrecovered", record.unrecovered))
    if record.retry_later:
        metrics.append(("StripePurchaseNotRecorded", 1))
    return metrics


# ---------------------------------------------------------------------- recording it once
@dataclass
class EventBook:
    """Writes each event's record once, and answers a redelivery with the record first written."""

    store: StripeStore
    clock: Callable[[], str]

    def finish(self, record: EventRecord, content: str) -> EventRecord:
        """Record an event that wrote no entry (one conditional put); a redelivery gets the first record."""
        if record.retry_later:
            return record  # not recorded: Stripe delivers it again, and then it is processed again
        existing = self.store.put_event(record, processed_at=self.clock(), content_hash=content)
        return record if existing is None else self.same_event(existing, content)

    @staticmethod
    def same_event(existing: StoredEvent, content: str) -> EventRecord:
        """The first record of a redelivered event; `StripeEventConflict` if its content differs."""
        if existing.content_hash is not None and existing.content_hash != content:
            raise StripeEventConflict(
                f"event {existing.record.event_id} was already processed with other content; it is not processed again"
            )
        return existing.record

    def entry_guards(
        self, record: EventRecord, content: str, *, also: Sequence[Guard] = ()
    ) -> Callable[[list[Entry]], list[Guard]]:
        """The guards of an entry's transaction: `also`, then the event's record naming the entry."""
        processed_at = self.clock()

        def guards(entries: list[Entry]) -> list[Guard]:
            entry = entries[0]
            written = replace(
                record,
                entry_id=entry.entry_id,
                entry_seq=entry.seq,
                tokens=entry.amount,
                unrecovered=entry.unrecovered,
            )
            return [*also, self.store.event_guard(written, processed_at=processed_at, content_hash=content)]

        return guards

    def recorded_meanwhile(self, event_id: str, content: str) -> EventRecord:
        """The record a concurrent delivery of the same event wrote first (its guard refused ours)."""
        existing = self.store.stored_event(event_id)
        if existing is None:
            raise InvariantViolation(f"the record of event {event_id} refused a put but is not there")
        return self.same_event(existing, content)

    @staticmethod
    def with_entry(record: EventRecord, body: Mapping[str, Any]) -> EventRecord:
        """`record` naming the entry of a `{entry, balance}` answer."""
        entry = body["entry"]
        return replace(
            record,
            entry_id=entry["entry_id"],
            entry_seq=entry["seq"],
            tokens=entry["amount"],
            unrecovered=entry.get("unrecovered"),
        )
