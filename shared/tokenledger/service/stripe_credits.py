"""Stripe events into ledger entries: credit purchases once, claw back refunds and disputes.

Everything goes through the one write path, `Ledger.write`, with an idempotency record in
the same transaction as the entry:

- A purchase is keyed on the payment (`idem|purchase|stripe|<payment_intent or session>`),
  kept forever. Redeliveries, both session events, concurrent deliveries and a delivery
  whose write committed before its Lambda timed out all meet that record and credit nothing.
- A clawback moves the purchase's *clawback level* (tokens taken back so far, recovered or
  not) up to the event's target. The level is a chain of step items in the idempotency
  table (`stripe-clawback|<payment>|<from level>`), each put if absent in the same
  transaction as its chargeback entry, so two clawbacks of one purchase can never both
  start from the same level. Each event is also keyed on itself (refund: charge and
  cumulative amount; dispute: dispute id) so a redelivery replays the first answer.

Rounding (refunds): the level after a refund is
`floor(purchase_tokens * amount_refunded / charge_amount)`, on the cumulative
`amount_refunded`. It never takes more than the refunded share, partial refunds add up to
exactly the purchase at a full refund (the floor of `tokens * amount / amount` is `tokens`),
and the order refunds arrive in does not change the total. A dispute sets the level to the
whole purchase.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Protocol

from tokenledger.adapters.ids import utc_now_iso
from tokenledger.domain.catalog import Catalog, load_catalog
from tokenledger.domain.errors import ContentionExhausted, IdempotencyKeyReused, InvariantViolation, LedgerError
from tokenledger.domain.model import ID_CHARS_MAX, Account, Entry, EntryDraft, EntryType
from tokenledger.http.schemas import ID_PATTERN
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import GuardFailed, Ledger, WriteResult
from tokenledger.service.ports import Guard

STRIPE = "stripe"  # the counterparty on every Stripe entry, and the idempotency caller
PURCHASE_ROUTE = "purchase"
CHARGEBACK_ROUTE = "chargeback"
CLAWBACK_STEP_PREFIX = "stripe-clawback"
CLAWBACK_STEPS_MAX = 100  # clawback steps of one purchase (each needs a refund that moves the level)
CLAWBACK_ATTEMPTS_MAX = 6  # rounds lost to other clawbacks of the same purchase before giving up
RELATED_ENTRIES_MAX = 50  # entries read through `by-related-id` when looking for a purchase

SESSION_COMPLETED = "checkout.session.completed"
SESSION_ASYNC_SUCCEEDED = "checkout.session.async_payment_succeeded"
CHARGE_REFUNDED = "charge.refunded"
DISPUTE_CREATED = "charge.dispute.created"
HANDLED_TYPES = frozenset({SESSION_COMPLETED, SESSION_ASYNC_SUCCEEDED, CHARGE_REFUNDED, DISPUTE_CREATED})

_STRIPE_ID = re.compile(rf"^[A-Za-z0-9_]{{1,{ID_CHARS_MAX}}}$")
_USER_ID = re.compile(ID_PATTERN)
_PACKAGE_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


class Outcome(StrEnum):
    """What processing one Stripe event did (stored on its event record)."""

    CREDITED = "credited"  # this event wrote the purchase entry
    ALREADY_CREDITED = "already_credited"  # the payment was credited by another event (the other session event)
    NOT_PAID = "not_paid"  # checkout.session.completed with payment_status != "paid"
    UNKNOWN_PACKAGE = "unknown_package"  # metadata.package_id is not in the catalog
    MISSING_METADATA = "missing_metadata"  # metadata.user_id or metadata.package_id missing or malformed
    PAYMENT_CONFLICT = "payment_conflict"  # the payment was credited for another (user, package)
    INVALID_EVENT = "invalid_event"  # signed, but lacks a field this type needs (ids, amounts)
    CLAWED_BACK = "clawed_back"  # this event wrote a chargeback entry
    NOTHING_DUE = "nothing_due"  # the clawback level already covers this event (later refund first, rounding)
    PURCHASE_NOT_CREDITED = "purchase_not_credited"  # refund/dispute of a payment deliberately not credited
    PURCHASE_NOT_FOUND = "purchase_not_found"  # refund/dispute before its purchase is recorded: 409, retried
    NOT_A_PURCHASE = "not_a_purchase"  # charge/dispute without a payment intent: not a Checkout payment
    IGNORED = "ignored"  # an event type this endpoint does not act on


NOT_CREDITED = frozenset(
    {Outcome.NOT_PAID, Outcome.UNKNOWN_PACKAGE, Outcome.MISSING_METADATA, Outcome.PAYMENT_CONFLICT}
)
# A payment whose records show one of these and never a credit will not get a purchase entry.
REFUSED_PAYMENT = frozenset({Outcome.UNKNOWN_PACKAGE, Outcome.MISSING_METADATA})


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


class StripeStore(Protocol):
    """What the Stripe use case reads and records beside the ledger's write path."""

    def related_entries(self, related_id: str, *, limit: int) -> Iterable[Entry]:
        """Entries whose `related_id` is this, oldest first, read in full as they are iterated."""
        ...

    def clawback_step(self, pk: str) -> int | None:
        """The level a clawback step item moved to, or None if there is no such step yet."""
        ...

    def payment_outcomes(self, payment_id: str) -> set[str]:
        """Outcomes recorded for this payment's events so far."""
        ...

    def record_event(self, record: EventRecord, *, processed_at: str) -> None:
        """Upsert the event's record (last processing wins; deliveries are counted)."""
        ...


def refund_clawback_level(purchase_tokens: int, amount_refunded: int, charge_amount: int) -> int:
    """Tokens taken back in total once `amount_refunded` of `charge_amount` is refunded (floor)."""
    if charge_amount <= 0 or not 0 <= amount_refunded <= charge_amount or purchase_tokens <= 0:
        raise InvariantViolation("refund proportions need 0 <= refunded <= amount, amount > 0, tokens > 0")
    return purchase_tokens * amount_refunded // charge_amount


def clawback_step_pk(payment_id: str, from_level: int) -> str:
    return f"{CLAWBACK_STEP_PREFIX}|{payment_id}|{from_level}"


def outcome_metrics(record: EventRecord) -> list[tuple[str, int]]:
    """The metrics one processed event adds (names are a fixed, small set)."""
    metrics = [("StripeEvents", 1)]
    if record.outcome in NOT_CREDITED or record.outcome is Outcome.INVALID_EVENT:
        metrics.append(("StripePurchasesNotCredited", 1))
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
    return text if text is not None and _STRIPE_ID.match(text) else None


def _entry_body(user_id: str) -> Callable[[list[Entry], dict[str, Account]], dict[str, Any]]:
    def body(entries: list[Entry], after: dict[str, Account]) -> dict[str, Any]:
        return {"entry": entries[0].to_api(), "balance": after[user_id].balance}

    return body


@dataclass
class StripeCredits:
    """The use case behind `POST /v1/webhooks/stripe`, given an already verified event."""

    ledger: Ledger
    store: StripeStore
    catalog: Catalog = field(default_factory=load_catalog)
    clock: Callable[[], str] = utc_now_iso

    def handle(self, event: Mapping[str, Any]) -> EventRecord:
        """Apply the event (at most once) and record what it did; returns that record."""
        obj: Mapping[str, Any] = event["data"]["object"]
        base = EventRecord(
            event_id=str(event["id"]),
            type=str(event["type"]),
            outcome=Outcome.IGNORED,
            livemode=event.get("livemode") is True,
            stripe_created=_int(event.get("created")),
        )
        if base.type in (SESSION_COMPLETED, SESSION_ASYNC_SUCCEEDED):
            record = self._purchase(base, obj)
        elif base.type == CHARGE_REFUNDED:
            record = self._refund(base, obj)
        elif base.type == DISPUTE_CREATED:
            record = self._dispute(base, obj)
        else:
            record = base
        self.store.record_event(record, processed_at=self.clock())
        return record

    # ------------------------------------------------------------------ purchases
    def _purchase(self, base: EventRecord, session: Mapping[str, Any]) -> EventRecord:
        session_id = _stripe_id(session.get("id"))
        payment_id = _stripe_id(session.get("payment_intent")) or session_id
        raw_metadata = session.get("metadata")
        metadata: Mapping[str, Any] = raw_metadata if isinstance(raw_metadata, dict) else {}
        user_id, package_id = _text(metadata.get("user_id")), _text(metadata.get("package_id"))
        record = replace(
            base,
            session_id=session_id,
            payment_id=payment_id,
            amount=_int(session.get("amount_total")),
            currency=_text(session.get("currency")),
            user_id=user_id if user_id and _USER_ID.match(user_id) else None,
            package_id=package_id if package_id and _PACKAGE_ID.match(package_id) else None,
        )
        if payment_id is None:
            return replace(record, outcome=Outcome.INVALID_EVENT, detail="the session has no valid id")
        if base.type == SESSION_COMPLETED and session.get("payment_status") != "paid":
            status = _text(session.get("payment_status")) or "missing"
            return replace(record, outcome=Outcome.NOT_PAID, detail=f"payment_status is {status[:40]}")
        if record.user_id is None or record.package_id is None:
            missing = [n for n, v in (("user_id", record.user_id), ("package_id", record.package_id)) if v is None]
            return replace(
                record,
                outcome=Outcome.MISSING_METADATA,
                detail=f"metadata.{' and metadata.'.join(missing)} missing or invalid",
            )
        package = self.catalog.find(record.package_id)
        if package is None:
            return replace(record, outcome=Outcome.UNKNOWN_PACKAGE, detail="metadata.package_id is not in the catalog")
        user = record.user_id
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
        try:
            result = self.ledger.write(
                lambda _accounts: {user: [draft]},
                users=[user],
                scope=scope,
                body=_entry_body(user),
                idempotency_ttl_s=None,  # payment keys are kept forever
                status=200,
            )
        except IdempotencyKeyReused:
            return replace(
                record, outcome=Outcome.PAYMENT_CONFLICT, detail="this payment was credited for another user or package"
            )
        entry = result.body["entry"]
        by_this_event = not result.replayed or entry["metadata"].get("stripe_event") == base.event_id
        return self._with_entry(
            replace(record, outcome=Outcome.CREDITED if by_this_event else Outcome.ALREADY_CREDITED), result
        )

    # ------------------------------------------------------------------ clawbacks
    def _refund(self, base: EventRecord, charge: Mapping[str, Any]) -> EventRecord:
        record = replace(
            base,
            charge_id=_stripe_id(charge.get("id")),
            payment_id=_stripe_id(charge.get("payment_intent")),
            amount=_int(charge.get("amount")),
            amount_refunded=_int(charge.get("amount_refunded")),
            currency=_text(charge.get("currency")),
        )
        if record.charge_id is None:
            return replace(record, outcome=Outcome.INVALID_EVENT, detail="the charge has no valid id")
        if record.payment_id is None:
            return replace(record, outcome=Outcome.NOT_A_PURCHASE, detail="the charge has no payment intent")
        amount, refunded = record.amount, record.amount_refunded
        if amount is None or refunded is None or amount <= 0 or not 0 <= refunded <= amount:
            return replace(record, outcome=Outcome.INVALID_EVENT, detail="amount and amount_refunded do not fit")
        return self._claw_back(
            record,
            key=f"refund:{record.charge_id}:{refunded}",
            target=lambda tokens: refund_clawback_level(tokens, refunded, amount),
        )

    def _dispute(self, base: EventRecord, dispute: Mapping[str, Any]) -> EventRecord:
        record = replace(
            base,
            dispute_id=_stripe_id(dispute.get("id")),
            charge_id=_stripe_id(dispute.get("charge")),
            payment_id=_stripe_id(dispute.get("payment_intent")),
            amount=_int(dispute.get("amount")),
            currency=_text(dispute.get("currency")),
        )
        if record.dispute_id is None:
            return replace(record, outcome=Outcome.INVALID_EVENT, detail="the dispute has no valid id")
        if record.payment_id is None:
            return replace(record, outcome=Outcome.NOT_A_PURCHASE, detail="the dispute has no payment intent")
        return self._claw_back(record, key=f"dispute:{record.dispute_id}", target=lambda tokens: tokens)

    def _claw_back(self, record: EventRecord, *, key: str, target: Callable[[int], int]) -> EventRecord:
        payment_id = record.payment_id
        if payment_id is None:
            raise InvariantViolation("a clawback needs the payment")
        purchase = self._find_purchase(payment_id)
        if purchase is None:
            outcomes = self.store.payment_outcomes(payment_id)
            if outcomes & REFUSED_PAYMENT and Outcome.CREDITED not in outcomes:
                return replace(record, outcome=Outcome.PURCHASE_NOT_CREDITED, detail="the payment was never credited")
            return replace(record, outcome=Outcome.PURCHASE_NOT_FOUND, detail="no purchase entry for this payment yet")
        user = purchase.user_id
        level_target = target(purchase.amount)
        record = replace(record, user_id=user, package_id=purchase.metadata.get("package_id"))
        scope = IdempotencyScope(
            caller=STRIPE,
            route=CHARGEBACK_ROUTE,
            key=key,
            request_hash=request_hash({"purchase": purchase.entry_id, "level": level_target}),
        )
        stored = self.ledger.repo.get_idempotency(scope.pk)
        if stored is not None:  # a redelivery of an event that already clawed back
            replayed = WriteResult(status=stored.status, body=scope.check_replay(stored).body, replayed=True)
            return self._with_entry(replace(record, outcome=Outcome.CLAWED_BACK, clawback_level=level_target), replayed)
        for _ in range(CLAWBACK_ATTEMPTS_MAX):
            level, step_pk = self._clawback_level(payment_id)
            due = level_target - level
            if due <= 0:
                return replace(record, outcome=Outcome.NOTHING_DUE, clawback_level=level)
            step = Guard(
                name="clawback_step",
                pk=step_pk,
                attributes={"to": level_target, "from": level, "event_id": record.event_id, "payment_id": payment_id},
            )
            try:
                result = self.ledger.write(
                    self._chargeback_plan(user, due, payment_id, record.event_id),
                    users=[user],
                    scope=scope,
                    body=_entry_body(user),
                    guards=[step],
                    idempotency_ttl_s=None,
                    status=200,
                )
            except GuardFailed:
                continue  # another clawback of this purchase took that step first: read the new level
            return self._with_entry(replace(record, outcome=Outcome.CLAWED_BACK, clawback_level=level_target), result)
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

    def _find_purchase(self, payment_id: str) -> Entry | None:
        """The Stripe purchase entry for the payment (a user's own entries may reuse the id: skip them)."""
        for entry in self.store.related_entries(payment_id, limit=RELATED_ENTRIES_MAX):
            if entry.type is EntryType.PURCHASE and entry.counterparty == STRIPE:
                return entry
        return None

    def _clawback_level(self, payment_id: str) -> tuple[int, str]:
        """The purchase's clawback level now, and the step item the next clawback must create."""
        level = 0
        for _ in range(CLAWBACK_STEPS_MAX):
            step_pk = clawback_step_pk(payment_id, level)
            moved_to = self.store.clawback_step(step_pk)
            if moved_to is None:
                return level, step_pk
            if moved_to <= level:
                raise InvariantViolation(f"clawback step {step_pk} does not move the level up")
            level = moved_to
        raise InvariantViolation(f"payment {payment_id} has more than {CLAWBACK_STEPS_MAX} clawback steps")

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
