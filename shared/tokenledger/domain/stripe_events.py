"""A processed Stripe event's record: what it did, and the content it was processed for.

Pure data. The webhook's use case writes one record per event (service/stripe_credits.py),
the Stripe store keeps it as an item of the Stripe events table (docs/stripe.md has its
shape: `record_attributes` and `stored_event_from` are that mapping, both ways) and the
reconciliation reads it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from tokenledger.domain.stripe_outcomes import Outcome


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One processed Stripe event, as the reconciliation reads it (docs/stripe.md has the item shape)."""

    event_id: str
    type: str
    outcome: Outcome
    livemode: bool = False
    stripe_created: int | None = None
    payment_id: str | None = None
    session_id: str | None = None
    charge_id: str | None = None
    dispute_id: str | None = None
    user_id: str | None = None
    package_id: str | None = None
    amount: int | None = None  # the payment's amount in the currency's minor unit
    amount_subtotal: int | None = None  # sessions: before discounts and taxes, checked against the catalog
    currency: str | None = None
    amount_refunded: int | None = None  # cumulative, charge.refunded only
    entry_id: str | None = None
    entry_seq: int | None = None
    tokens: int | None = None  # the entry's signed amount (purchase +, chargeback -)
    unrecovered: int | None = None  # clawback tokens the balance could not give back
    clawback_level: int | None = None  # tokens the purchase's clawback has reached after this event
    detail: str | None = None

    @property
    def retry_later(self) -> bool:
        return self.outcome is Outcome.PURCHASE_NOT_FOUND


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event's record as first written, and the hash of the content it was written for."""

    record: EventRecord
    content_hash: str | None


def event_content_hash(event: Mapping[str, Any]) -> str:
    """What makes an event the same event: id, type, created, livemode and its object.

    Stripe's retries carry the same event; fields that change between deliveries
    (`pending_webhooks`, `request`) are left out.
    """
    content = {k: event.get(k) for k in ("id", "type", "created", "livemode", "data")}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def record_attributes(record: EventRecord, *, processed_at: str, content_hash: str) -> dict[str, Any]:
    """The event item's attributes besides its key (docs/stripe.md): plain str/int/bool values."""
    attributes: dict[str, Any] = {"processed_at": processed_at, "content_hash": content_hash}
    for spec in fields(record):
        value = getattr(record, spec.name)
        if spec.name != "event_id" and value is not None:
            attributes[spec.name] = str(value) if isinstance(value, StrEnum) else value
    return attributes


def stored_event_from(event_id: str, attributes: Mapping[str, Any]) -> StoredEvent:
    """The inverse of `record_attributes`."""
    known = {spec.name for spec in fields(EventRecord)} - {"event_id", "outcome"}
    values = {k: v for k, v in attributes.items() if k in known}
    record = EventRecord(event_id=event_id, outcome=Outcome(str(attributes["outcome"])), **values)
    hashed = attributes.get("content_hash")
    return StoredEvent(record=record, content_hash=hashed if isinstance(hashed, str) else None)
