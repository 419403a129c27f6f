"""What the reconciliation reads and writes through: adapters (DynamoDB, S3) and fakes implement these.

Only data types and protocols live here, so an adapter depends on this module and on nothing
of the use cases.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tokenledger.domain.model import Account, Entry
from tokenledger.service.ports import AccountWrite, Guard, IdempotencyClaim

LOOKUP_BATCH_MAX = 100  # keys per batched existence lookup (DynamoDB BatchGetItem's limit)

Progress = Callable[[str, int], None]  # (phase, items done in that phase so far)


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """An idempotency item, reduced to what the audit needs: its key and the entries it names."""

    pk: str
    entry_refs: tuple[tuple[str, int, str], ...]  # (user_id, seq, entry_id)


@dataclass(frozen=True, slots=True)
class PaymentRecord:
    """A processed Stripe event as the Stripe function records it (docs/stripe.md), reduced."""

    event_id: str
    outcome: str
    payment_id: str | None = None
    user_id: str | None = None
    entry_ref: tuple[str, int, str] | None = None  # (user_id, seq, entry_id) of the entry it wrote


@dataclass(frozen=True, slots=True)
class StripeEventSeen:
    """What a purchase's crediting event recorded: which payment, and with what outcome."""

    payment_id: str | None
    outcome: str


class AccountProbe(Protocol):
    """Exact, strongly consistent reads of one account, for re-checks, audit and repair."""

    def get_account(self, user_id: str) -> Account | None: ...

    def iter_chain(self, user_id: str) -> Iterator[Entry]:
        """Every entry of the user in seq order (paged Query, ConsistentRead)."""
        ...


class EntryIndex(Protocol):
    def entry_ids_at(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        """The entry id stored at each (user_id, seq) that exists (at most LOOKUP_BATCH_MAX keys)."""
        ...


class PaymentIndex(Protocol):
    def stripe_events(self, event_ids: Sequence[str]) -> dict[str, StripeEventSeen]:
        """The recorded Stripe events among these ids (at most LOOKUP_BATCH_MAX)."""
        ...

    def purchased_payments(self, payment_ids: Sequence[str]) -> set[str]:
        """Which of these payment ids have a purchase entry."""
        ...


class AccountWriter(Protocol):
    def commit(
        self, writes: Sequence[AccountWrite], *, idempotency: IdempotencyClaim | None, guards: Sequence[Guard] = ()
    ) -> None: ...


class LedgerPages(Protocol):
    """The tables as streams of pages, for the segments [start, end) of a `total`-way scan."""

    def account_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[Account]]: ...

    def entry_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[Entry]]: ...

    def idempotency_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[IdempotencyRecord]]: ...

    def payment_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[PaymentRecord]] | None:
        """None when no Stripe payment record exists to compare with (the check is skipped)."""
        ...


REPORTS_LIST_MAX = 50  # reports one listing reads (`GET /v1/admin/reports`: each is one GetObject)


class ReportSink(Protocol):
    def snapshot(self, key: str) -> Any:
        """A context manager yielding a callable that takes one snapshot line (`report.snapshot_line`) per call."""
        ...

    def put_json(self, key: str, body: dict[str, Any]) -> None: ...

    def get_json(self, key: str) -> dict[str, Any] | None: ...

    def publish(self, report: dict[str, Any]) -> str: ...

    def concatenate(self, keys: Sequence[str], into: str) -> None: ...


@dataclass(frozen=True, slots=True)
class ReportKeys:
    """How the sink names things (the adapter's layout, passed in so the service stays pure)."""

    snapshot: Callable[[str, str], str]  # (run_id, started_at) -> key
    part: Callable[[str, int, int], str]  # (run_id, start, end) -> key
    part_snapshot: Callable[[str, int, int], str]
