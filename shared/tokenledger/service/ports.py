"""The ports the service talks to. Adapters (DynamoDB) and fakes (tests) implement them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tokenledger.domain.model import Account, Entry
from tokenledger.domain.stripe_events import EventRecord, StoredEvent

if TYPE_CHECKING:  # the catalog loads pydantic: only the checkout function needs it at run time
    from tokenledger.domain.catalog import Package

STRIPE_EVENT_GUARD = "stripe_event"  # the name of an event's record put as a guard in its entry's transaction


@dataclass(frozen=True, slots=True)
class EntryMark:
    """What the time index holds about one entry."""

    seq: int
    balance_after: int
    hash: str | None
    created_at: str


# The clock and the id source, injected by the composition root (bootstrap: adapters/ids.py).
Clock = Callable[[], str]  # now, in UTC: ISO 8601 with milliseconds and a `Z`
NewId = Callable[[], str]  # a new unique id, sortable by creation time (a ULID)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """What an idempotency record remembers: the request's hash and the answer given.

    Records written before the HTTP layer picked statuses also hold the status they answered
    with: always the one their route answers with, so it is not read.
    """

    request_hash: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IdempotencyClaim:
    """An idempotency record to put, if absent, in the same transaction as the entries."""

    pk: str
    response: StoredResponse
    expires_at: int | None  # epoch seconds for the TTL; None keeps it forever


@dataclass(frozen=True, slots=True)
class AccountWrite:
    """Move one account from `before` (matched on version and balance) to `after`, writing `entries`."""

    before: Account
    after: Account
    entries: Sequence[Entry]


@dataclass(frozen=True, slots=True)
class Guard:
    """An item that must not exist yet, put in the same transaction (e.g. "entry X reversed").

    `name` identifies it in a refusal. It lives in the idempotency table under `pk` and never expires,
    unless `table` names another table, whose key attribute is `key` (a Stripe event's record).
    With `sk` it lives in the predictions table under (pk, sk); with `check_only` it is a
    `ConditionCheck` (e.g. "prediction P is not closed") and puts nothing.
    """

    name: str
    pk: str
    attributes: dict[str, Any] = field(default_factory=dict)
    table: str | None = None
    key: str = "pk"
    # With `sk`, the item lives in the predictions table under (pk, sk) instead.
    sk: str | None = None
    # A check only: the transaction fails if the item exists, and puts nothing (a ConditionCheck).
    check_only: bool = False


class TransactionRefused(Exception):
    """DynamoDB cancelled the transaction; the reasons, item by item, already decoded."""

    def __init__(
        self,
        *,
        replay: StoredResponse | None = None,
        stale: dict[str, Account] | None = None,
        guards_failed: Sequence[str] = (),
        conflict: bool = False,
    ) -> None:
        super().__init__("transaction refused")
        self.replay = replay
        self.stale = stale or {}  # user_id -> the account as it is now
        self.guards_failed = list(guards_failed)
        # Another transaction touched one of the items at that moment (or one was throttled):
        # nothing was written, the same write may simply be tried again.
        self.conflict = conflict


class LedgerRepository(Protocol):
    def get_account(self, user_id: str) -> Account | None: ...

    def get_accounts(self, user_ids: Sequence[str]) -> dict[str, Account]: ...

    def commit(
        self,
        writes: Sequence[AccountWrite],
        *,
        idempotency: IdempotencyClaim | None,
        guards: Sequence[Guard] = (),
    ) -> None:
        """Apply all writes atomically or raise `TransactionRefused`."""
        ...

    def get_idempotency(self, pk: str) -> StoredResponse | None: ...

    def get_guard(self, pk: str) -> dict[str, Any] | None:
        """The guard item under `pk` (strongly consistent), or None if it was never put."""
        ...

    def list_entries(
        self, user_id: str, *, before_seq: int | None, limit: int, entry_type: str | None
    ) -> tuple[list[Entry], int | None]:
        """Newest first, seq < before_seq; returns (entries, seq to continue below or None at the end)."""
        ...

    def find_entry(self, entry_id: str) -> Entry | None: ...

    def last_entry_before(self, user_id: str, bound: str, *, inclusive: bool) -> EntryMark | None:
        """The time index's newest entry with created_at < bound (<= when inclusive)."""
        ...

    def entries_after(self, user_id: str, after_seq: int, limit: int) -> list[Entry]:
        """Up to `limit` entries with seq > after_seq, oldest first (strongly consistent)."""
        ...


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
        """The event's record as a guard named `STRIPE_EVENT_GUARD`: put if absent in its entry's transaction."""
        ...

    def payment_outcomes(self, payment_id: str) -> set[str]:
        """Outcomes recorded for this payment's events so far."""
        ...


# ---------------------------------------------------------------------- checkout: the payment provider
@dataclass(frozen=True, slots=True)
class SessionRequest:
    """What Stripe is asked for: the caller buys one package, and where the buyer goes after."""

    user_id: str
    package: Package
    success_url: str
    cancel_url: str

    @property
    def metadata(self) -> dict[str, str]:
        return {"user_id": self.user_id, "package_id": self.package.package_id}


@dataclass(frozen=True, slots=True)
class CreatedSession:
    """The parts of Stripe's Checkout Session object that we answer with or check."""

    session_id: str
    url: str
    expires_at: int  # epoch seconds
    amount_subtotal: int | None
    currency: str | None


class PaymentProvider(Protocol):
    def create_checkout_session(self, request: SessionRequest, *, idempotency_key: str) -> CreatedSession:
        """One session; raises `PaymentProviderUnavailable` (or `IdempotencyKeyReused`) when Stripe does not make it."""
        ...


class CheckoutRecords(Protocol):
    def get(self, pk: str) -> StoredResponse | None:
        """The record under `pk`, strongly consistent, or None."""
        ...

    def put_if_absent(self, pk: str, response: StoredResponse, *, expires_at: int) -> StoredResponse | None:
        """Put the record unless one exists; returns the existing one then (None when this put won)."""
        ...


# ---------------------------------------------------------------------- outbound events: the bus
EVENT_SOURCE = "tokenledger"  # the `source` of every event the ledger publishes


@dataclass(frozen=True, slots=True)
class OutboundEvent:
    """One event for the bus. `event_id` is stable across redeliveries (consumers dedupe on it)."""

    detail_type: str
    detail: dict[str, Any]
    event_id: str
    time: str | None = None  # RFC 3339; EventBridge's `time` (default: when it was put)
    user_id: str | None = None  # per user, events follow `seq`
    seq: int | None = None


class PublishFailed(Exception):
    """Some events were not accepted by the bus after every attempt (nothing was dropped silently)."""

    def __init__(self, message: str, *, refused: Sequence[OutboundEvent], codes: Sequence[str]) -> None:
        super().__init__(message)
        self.refused = list(refused)
        self.codes = list(codes)
