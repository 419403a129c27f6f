"""Stripe events into ledger entries: credit purchases once, claw back refunds and disputes.

Everything goes through the one write path, `Ledger.write`, with an idempotency record in
the same transaction as the entry:

- A purchase is keyed on the payment (`idem|purchase|stripe|<payment_intent or session>`),
  kept forever. Redeliveries, both session events, concurrent deliveries and a delivery
  whose write committed before its Lambda timed out all meet that record and credit nothing.
  That record is also how a refund or dispute finds the purchase (one GetItem): never an
  index of related ids, which users choose (service/clawback.py).
- A purchase is credited only when the session's `amount_subtotal` and `currency` equal the
  catalog price of its package; otherwise `price_mismatch`: 200, nothing credited, reported.
- A clawback moves the purchase's *clawback level* (tokens taken back so far, recovered or
  not, by Stripe events or by an admin reversal of the purchase) up to the event's target.
  The level is a chain of step items in the idempotency table
  (`stripe-clawback|<payment>|<from level>`), each put if absent in the same transaction as
  its entry, so two clawbacks of one purchase can never both start from the same level.
  Each event is also keyed on itself (refund: charge and cumulative amount; dispute:
  dispute id) so the same refund sent as two events takes back once.
- Each event's record (Stripe events table, keyed on the event id) is put if absent: in the
  same transaction as the entry when the event writes one, alone otherwise. A redelivery
  finds it and writes nothing; the same id with other content is refused
  (`stripe_event_conflict`), never recorded over the first.

Round trips of a purchase: one BatchGetItem (the event's record and the account, both
strongly consistent) and one TransactWriteItems (account, entry, exactly-once record, event
record). A redelivery: the BatchGetItem alone.

Rounding (refunds): the level after a refund is
`floor(purchase_tokens * amount_refunded / charge_amount)`, on the cumulative
`amount_refunded`. It never takes more than the refunded share, partial refunds add up to
exactly the purchase at a full refund (the floor of `tokens * amount / amount` is `tokens`),
and the order refunds arrive in does not change the total. A dispute sets the level to the
whole purchase.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from enum import StrEnum
from typing import Any, Protocol

from tokenledger.adapters.ids import utc_now_iso
from tokenledger.domain.catalog import Catalog, load_catalog
from tokenledger.domain.errors import (
    ContentionExhausted,
    IdempotencyKeyReused,
    InvariantViolation,
    LedgerError,
    ValidationFailed,
)
from tokenledger.domain.model import ID_CHARS_MAX, ID_PATTERN, Account, Entry, EntryDraft, EntryType
from tokenledger.domain.stripe_outcomes import NOT_CREDITED, REFUSED_PAYMENT, Outcome
from tokenledger.service.clawback import (
    CLAWBACK_ATTEMPTS_MAX,
    CLAWBACK_STEP_GUARD,
    CLAWBACK_STEP_PREFIX,
    CLAWBACK_STEPS_MAX,
    PURCHASE_ROUTE,
    STRIPE,
    StripePurchase,
    clawback_level,
    clawback_step_pk,
    find_purchase,
)
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import GuardFailed, Ledger, WriteResult
from tokenledger.service.ports import Guard

__all__ = [
    "CLAWBACK_STEPS_MAX",
    "CLAWBACK_STEP_PREFIX",
    "STRIPE",
    "clawback_step_pk",
]

CHARGEBACK_ROUTE = "chargeback"
EVENT_GUARD = "stripe_event"  # the event's record, put if absent in the entry's transaction

SESSION_COMPLETED = "checkout.session.completed"
SESSION_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"
HANDLED_TYPES = frozenset({SESSION_COMPLETED, SESSION_ASYNC_SUCCEEDED, CHARGE_REFUNDED, DISPUTE_CREATED})

EVENT_ID_CHARS_MAX = 255
# Stripe's event ids are `evt_` and letters/digits; anything else never becomes a key.
_EVENT_ID = re.compile(rf"^evt_[A-Za-z0-9_]{{1,{EVENT_ID_CHARS_MAX - 4}}}$")
EVENT_TYPE_CHARS_MAX = 100
_EVENT_TYPE = re.compile(rf"^[a-z0-9_.]{{1,{EVENT_TYPE_CHARS_MAX}}}$")
_STRIPE_ID = re.compile(rf"^[A-Za-z0-9_]{{1,{ID_CHARS_MAX}}}$")
_USER_ID = re.compile(ID_PATTERN)
_PACKAGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class StripeEventConflict(LedgerError):
    """The same event id arrived again with other content: the first record stands."""

    code = "stripe_event_conflict"
    status = 409
    title = "Stripe event already recorded with other content"


class PurchaseNotRecorded(LedgerError):
    """A refund or dispute arrived before its purchase: answered non-2xx so Stripe retries later."""

    code = "purchase_not_recorded"
    status = 409
    title = "Purchase not recorded yet"


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


class StripeStore(Protocol):
    """What the Stripe use case reads and records beside the ledger's write path."""

    def event_and_account(self, event_id: str, user_id: str) -> tuple[StoredEvent | None, Account | None]:
        """The event's record and the user's account, strongly consistent, in one round trip."""
        ...

    def stored_event(self, event_id: str) -> StoredEvent | None:
        """The event's record (strongly consistent), or None."""
        ...

    def put_event(self, record: EventRecord, *, processed_at: str, content_hash: str) -> StoredEvent | None:
        """Put the event's record if absent; the record already there, if any (then nothing is written)."""
        ...

    def event_guard(self, record: EventRecord, *, processed_at: str, content_hash: str) -> Guard:
        """The event's record as a guard: put if absent in the transaction of the entry it names."""
        ...

    def payment_outcomes(self, payment_id: str) -> set[str]:
        """Outcomes recorded for this payment's events so far."""
        ...


def refund_clawback_level(purchase_tokens: int, amount_refunded: int, charge_amount: int) -> int:
    """Tokens taken back in total once `amount_refunded` of `charge_amount` is refunded (floor)."""
    if charge_amount <= 0 or not 0 <= amount_refunded <= charge_amount or purchase_tokens <= 0:
        raise InvariantViolation("refund proportions need 0 <= refunded <= amount, amount > 0, tokens > 0")
    return purchase_tokens * amount_refunded // charge_amount


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


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stripe_id(value: Any) -> str | None:
    """An id field, which Stripe sends as a string or, when expanded, as an object with `id`."""
    if isinstance(value, dict):
        value = value.get("id")
    text = _text(value)
    return text if text is not None and _STRIPE_ID.fullmatch(text) else None


def _entry_body(user_id: str) -> Callable[[list[Entry], dict[str, Account]], dict[str, Any]]:
    def body(entries: list[Entry], after: dict[str, Account]) -> dict[str, Any]:
        return {"entry": entries[0].to_api(), "balance": after[user_id].balance}

    return body


def check_event_id(value: Any) -> str:
    """A Stripe event id (`evt_` and letters, digits, underscores; at most 255 characters), else 422."""
    if not isinstance(value, str) or not _EVENT_ID.fullmatch(value):
        raise ValidationFailed(
            "the event id is not a Stripe event id",
            errors=[{"loc": ["body", "id"], "type": "invalid"}],
        )
    return value


@dataclass
class StripeCredits:
    """The use case behind `POST /v1/webhooks/stripe`, given an already verified event."""

    ledger: Ledger
    store: StripeStore
    catalog: Catalog = field(default_factory=load_catalog)
    clock: Callable[[], str] = utc_now_iso

    def handle(self, event: Mapping[str, Any]) -> EventRecord:
        """Apply the event (at most once) and record what it did; returns that record.

        The record returned for a redelivery is the one first written. Raises
        `StripeEventConflict` when the id was recorded for other content.
        """
        event_id = check_event_id(event.get("id"))
        event_type = event.get("type")
        if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
            raise ValidationFailed("the event type is not a Stripe event type", errors=[{"loc": ["body", "type"]}])
        obj: Mapping[str, Any] = event["data"]["object"]
        base = EventRecord(
            event_id=event_id,
            type=event_type,
            outcome=Outcome.IGNORED,
            livemode=event.get("livemode") is True,
            stripe_created=_int(event.get("created")),
        )
        content = event_content_hash(event)
        if base.type in (SESSION_COMPLETED, SESSION_ASYNC_SUCCEEDED):
            return self._purchase(base, obj, content)
        if base.type == CHARGE_REFUNDED:
            return self._refund(base, obj, content)
        if base.type == DISPUTE_CREATED:
            return self._dispute(base, obj, content)
        return self._finish(base, content)

    # ------------------------------------------------------------------ event records
    def _finish(self, record: EventRecord, content: str) -> EventRecord:
        """Record an event that wrote no entry (one conditional put); a redelivery gets the first record."""
        if record.retry_later:
            return record  # not recorded: Stripe delivers it again, and then it is processed again
        existing = self.store.put_event(record, processed_at=self.clock(), content_hash=content)
        return record if existing is None else self._same_event(existing, content)

    @staticmethod
    def _same_event(existing: StoredEvent, content: str) -> EventRecord:
        if existing.content_hash is not None and existing.content_hash != content:
            raise StripeEventConflict(
                f"event {existing.record.event_id} was already processed with other content; it is not processed again"
            )
        return existing.record

    def _event_guard(
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

    # ------------------------------------------------------------------ purchases
    def _purchase(self, base: EventRecord, session: Mapping[str, Any], content: str) -> EventRecord:
        session_id = _stripe_id(session.get("id"))
        payment_id = _stripe_id(session.get("payment_intent")) or session_id
        raw_metadata = session.get("metadata")
        metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        user_id, package_id = _text(metadata.get("user_id")), _text(metadata.get("package_id"))
        currency = _text(session.get("currency"))
        record = replace(
            base,
            session_id=session_id,
            payment_id=payment_id,
            amount=_int(session.get("amount_total")),
            amount_subtotal=_int(session.get("amount_subtotal")),
            currency=currency[:8] if currency else None,
            user_id=user_id if user_id and _USER_ID.fullmatch(user_id) else None,
            package_id=package_id if package_id and _PACKAGE_ID.fullmatch(package_id) else None,
        )
        if payment_id is None:
            return self._finish(
                replace(record, outcome=Outcome.INVALID_EVENT, detail="the session has no valid id"), content
            )
        if base.type == SESSION_COMPLETED and session.get("payment_status") != "paid":
            status = _text(session.get("payment_status")) or "missing"
            return self._finish(
                replace(record, outcome=Outcome.NOT_PAID, detail=f"payment_status is {status[:40]}"), content
            )
        if record.user_id is None or record.package_id is None:
            missing = [n for n, v in (("user_id", record.user_id), ("package_id", record.package_id)) if v is None]
            return self._finish(
                replace(
                    record,
                    outcome=Outcome.MISSING_METADATA,
                    detail=f"metadata.{' and metadata.'.join(missing)} missing or invalid",
                ),
                content,
            )
        package = self.catalog.find(record.package_id)
        if package is None:
            return self._finish(
                replace(record, outcome=Outcome.UNKNOWN_PACKAGE, detail="metadata.package_id is not in the catalog"),
                content,
            )
        price = package.price
        if record.amount_subtotal != price.amount or record.currency != price.currency:
            paid = f"{record.amount_subtotal} {record.currency}"
            return self._finish(
                replace(
                    record,
                    outcome=Outcome.PRICE_MISMATCH,
                    detail=f"amount_subtotal and currency are {paid[:60]}, the catalog price is "
                    f"{price.amount} {price.currency}",
                ),
                content,
            )
        user = record.user_id
        existing, account = self.store.event_and_account(base.event_id, user)
        if existing is not None:  # a redelivery: nothing is written
            return self._same_event(existing, content)
        scope = IdempotencyScope(
            caller=STRIPE,
            route=PURCHASE_ROUTE,
            key=payment_id,
            request_hash=request_hash({"user_id": user, "package_id": package.package_id}),
        )
        entry_metadata = {"package_id": package.package_id, "stripe_event": base.event_id}
        if session_id is not None:
            entry_metadata["checkout_session"] = session_id
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
                body=_entry_body(user),
                guards=self._event_guard(credited, content),
                idempotency_ttl_s=None,  # payment keys are kept forever
                status=200,
                accounts_read={user: account or Account(user_id=user)},
            )
        except IdempotencyKeyReused:
            return self._finish(
                replace(
                    record,
                    outcome=Outcome.PAYMENT_CONFLICT,
                    detail="this payment was credited for another user or package",
                ),
                content,
            )
        except GuardFailed:  # the same event, delivered concurrently, recorded first
            return self._recorded_meanwhile(base.event_id, content)
        if not result.replayed:
            return self._with_entry(credited, result)
        # The payment was credited already: by the other session event, or by this very event
        # in a delivery racing this one. Record this event (unless that delivery did).
        entry = result.body["entry"]
        by_this_event = entry["metadata"].get("stripe_event") == base.event_id
        outcome = Outcome.CREDITED if by_this_event else Outcome.ALREADY_CREDITED
        return self._finish(self._with_entry(replace(record, outcome=outcome), result), content)

    def _recorded_meanwhile(self, event_id: str, content: str) -> EventRecord:
        existing = self.store.stored_event(event_id)
        if existing is None:
            raise InvariantViolation(f"the record of event {event_id} refused a put but is not there")
        return self._same_event(existing, content)

    # ------------------------------------------------------------------ clawbacks
    def _refund(self, base: EventRecord, charge: Mapping[str, Any], content: str) -> EventRecord:
        currency = _text(charge.get("currency"))
        record = replace(
            base,
            charge_id=_stripe_id(charge.get("id")),
            payment_id=_stripe_id(charge.get("payment_intent")),
            amount=_int(charge.get("amount")),
            amount_refunded=_int(charge.get("amount_refunded")),
            currency=currency[:8] if currency else None,
        )
        if record.charge_id is None:
            return self._finish(
                replace(record, outcome=Outcome.INVALID_EVENT, detail="the charge has no valid id"), content
            )
        if record.payment_id is None:
            return self._finish(
                replace(record, outcome=Outcome.NOT_A_PURCHASE, detail="the charge has no payment intent"), content
            )
        amount, refunded = record.amount, record.amount_refunded
        if amount is None or refunded is None or amount <= 0 or not 0 <= refunded <= amount:
            return self._finish(
                replace(record, outcome=Outcome.INVALID_EVENT, detail="amount and amount_refunded do not fit"), content
            )
        return self._claw_back(
            record,
            content,
            key=f"refund:{record.charge_id}:{refunded}",
            target=lambda tokens: refund_clawback_level(tokens, refunded, amount),
        )

    def _dispute(self, base: EventRecord, dispute: Mapping[str, Any], content: str) -> EventRecord:
        currency = _text(dispute.get("currency"))
        record = replace(
            base,
            dispute_id=_stripe_id(dispute.get("id")),
            charge_id=_stripe_id(dispute.get("charge")),
            payment_id=_stripe_id(dispute.get("payment_intent")),
            amount=_int(dispute.get("amount")),
            currency=currency[:8] if currency else None,
        )
        if record.dispute_id is None:
            return self._finish(
                replace(record, outcome=Outcome.INVALID_EVENT, detail="the dispute has no valid id"), content
            )
        if record.payment_id is None:
            return self._finish(
                replace(record, outcome=Outcome.NOT_A_PURCHASE, detail="the dispute has no payment intent"), content
            )
        return self._claw_back(record, content, key=f"dispute:{record.dispute_id}", target=lambda tokens: tokens)

    def _claw_back(self, record: EventRecord, content: str, *, key: str, target: Callable[[int], int]) -> EventRecord:
        payment_id = record.payment_id
        if payment_id is None:
            raise InvariantViolation("a clawback needs the payment")
        existing = self.store.stored_event(record.event_id)
        if existing is not None:  # a redelivery: nothing is written
            return self._same_event(existing, content)
        purchase = self._find_purchase(payment_id)
        if purchase is None:
            outcomes = self.store.payment_outcomes(payment_id)
            if outcomes & REFUSED_PAYMENT and Outcome.CREDITED not in outcomes:
                return self._finish(
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
        stored = self.ledger.repo.get_idempotency(scope.pk)
        if stored is not None:  # the same refund or dispute, sent again as another event
            replayed = WriteResult(status=stored.status, body=scope.check_replay(stored).body, replayed=True)
            clawed = replace(record, outcome=Outcome.CLAWED_BACK, clawback_level=level_target)
            return self._finish(self._with_entry(clawed, replayed), content)
        for _ in range(CLAWBACK_ATTEMPTS_MAX):
            level, step_pk = clawback_level(self.ledger.repo, payment_id)
            due = level_target - level
            if due <= 0:
                return self._finish(replace(record, outcome=Outcome.NOTHING_DUE, clawback_level=level), content)
            step = Guard(
                name=CLAWBACK_STEP_GUARD,
                pk=step_pk,
                attributes={"to": level_target, "from": level, "event_id": record.event_id, "payment_id": payment_id},
            )
            clawed = replace(record, outcome=Outcome.CLAWED_BACK, clawback_level=level_target)
            event_guard = self._event_guard(clawed, content, also=[step])
            try:
                result = self.ledger.write(
                    self._chargeback_plan(user, due, payment_id, record.event_id),
                    users=[user],
                    scope=scope,
                    body=_entry_body(user),
                    guards=event_guard,
                    idempotency_ttl_s=None,
                    status=200,
                )
            except GuardFailed as failed:
                if EVENT_GUARD in failed.names:  # the same event, delivered concurrently, recorded first
                    return self._recorded_meanwhile(record.event_id, content)
                continue  # another clawback of this purchase took that step first: read the new level
            if result.replayed:  # the same refund as another event, concurrently
                return self._finish(self._with_entry(clawed, result), content)
            return self._with_entry(clawed, result)
        raise ContentionExhausted(f"other clawbacks of payment {payment_id} kept moving its level; Stripe will retry")

    @staticmethod
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

    def _find_purchase(self, payment_id: str) -> StripePurchase | None:
        """The payment's purchase through its exactly-once record: one GetItem, nothing a user writes."""
        return find_purchase(self.ledger.repo, payment_id)

    @staticmethod
    def _with_entry(record: EventRecord, result: WriteResult) -> EventRecord:
        entry = result.body["entry"]
        return replace(
            record,
            entry_id=entry["entry_id"],
            entry_seq=entry["seq"],
            tokens=entry["amount"],
            unrecovered=entry.get("unrecovered"),
        )
