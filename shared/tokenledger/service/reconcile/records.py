"""The records around the chains: idempotency records and Stripe payments, checked in batches.

Neither needs a cut: what an idempotency record or a Stripe event record names was committed
before (or with) the record itself. Each check reads its pages once and looks up what they
name at most LOOKUP_BATCH_MAX keys at a time; findings go to the `add` callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from tokenledger.domain.model import Entry
from tokenledger.domain.stripe_outcomes import CREDITING, REFUSED_PAYMENT, Outcome
from tokenledger.service.reconcile.findings import Finding, FindingKind
from tokenledger.service.reconcile.ports import (
    LOOKUP_BATCH_MAX,
    EntryIndex,
    IdempotencyRecord,
    PaymentIndex,
    PaymentRecord,
    Progress,
)

# Outcomes of a Stripe event record, as stored (tokenledger.domain.stripe_outcomes).
CREDITING_OUTCOMES = CREDITING
# Money taken and deliberately not credited: a payment without a purchase unless another
# event of the same payment credited it.
REFUSED_OUTCOMES = REFUSED_PAYMENT
PRICE_MISMATCH_OUTCOME = Outcome.PRICE_MISMATCH
STRIPE_EVENT_METADATA = "stripe_event"  # the purchase entry's metadata key naming its crediting event

AddFinding = Callable[[Finding], None]
_EntryRef = tuple[str, int, str]  # (user_id, seq, entry_id)


# ---------------------------------------------------------------------- purchases -> Stripe events
def purchase_problems(payments: PaymentIndex, purchases: Sequence[Entry]) -> list[tuple[Entry, str]]:
    """Purchases whose crediting Stripe event is not recorded, or records another payment."""
    problems: list[tuple[Entry, str]] = []
    for start in range(0, len(purchases), LOOKUP_BATCH_MAX):
        batch = purchases[start : start + LOOKUP_BATCH_MAX]
        event_ids = sorted({e.metadata[STRIPE_EVENT_METADATA] for e in batch if e.metadata.get(STRIPE_EVENT_METADATA)})
        seen = payments.stripe_events(event_ids)
        for entry in batch:
            event_id = entry.metadata.get(STRIPE_EVENT_METADATA)
            record = seen.get(event_id) if event_id else None
            where = f"purchase seq {entry.seq} (payment {entry.related_id})"
            if event_id is None:
                problems.append((entry, f"{where} names no Stripe event"))
            elif record is None:
                problems.append((entry, f"{where}: Stripe event {event_id} is not recorded"))
            elif record.payment_id != entry.related_id or record.outcome not in CREDITING_OUTCOMES:
                problems.append(
                    (entry, f"{where}: Stripe event {event_id} records payment {record.payment_id}, {record.outcome}")
                )
    return problems


# ---------------------------------------------------------------------- idempotency records -> entries
def check_idempotency_records(
    entry_index: EntryIndex, record_pages: Iterable[Sequence[IdempotencyRecord]], add: AddFinding, progress: Progress
) -> None:
    """Every entry an idempotency record names must exist (they are written in one transaction)."""
    pending: list[tuple[IdempotencyRecord, _EntryRef]] = []
    done = 0
    for page in record_pages:
        for record in page:
            done += 1
            for ref in record.entry_refs:
                pending.append((record, ref))
                if len(pending) >= LOOKUP_BATCH_MAX:
                    _check_refs(entry_index, pending, add)
                    pending = []
        progress("idempotency", done)
    _check_refs(entry_index, pending, add)


def _check_refs(entry_index: EntryIndex, pending: list[tuple[IdempotencyRecord, _EntryRef]], add: AddFinding) -> None:
    if not pending:
        return
    found = entry_index.entry_ids_at(sorted({(u, s) for _, (u, s, _) in pending}))
    for record, (user_id, seq, entry_id) in pending:
        stored = found.get((user_id, seq))
        if stored != entry_id:
            what = "does not exist" if stored is None else f"holds entry {stored} instead"
            add(
                Finding(
                    user_id,
                    FindingKind.IDEMPOTENCY_DANGLING,
                    f"idempotency record {record.pk} names entry {entry_id} at seq {seq}, which {what}",
                )
            )


# ---------------------------------------------------------------------- Stripe payments -> purchases
def check_payment_records(
    payments: PaymentIndex,
    entry_index: EntryIndex,
    payment_pages: Iterable[Sequence[PaymentRecord]],
    add: AddFinding,
    progress: Progress,
) -> None:
    """Every credited Stripe payment has its purchase entry; refused payments are reported."""
    credited: list[PaymentRecord] = []
    refused: list[PaymentRecord] = []
    done = 0
    for page in payment_pages:
        for record in page:
            done += 1
            if record.outcome in CREDITING_OUTCOMES:
                credited.append(record)
            elif record.outcome in REFUSED_OUTCOMES and record.payment_id:
                refused.append(record)
            if len(credited) >= LOOKUP_BATCH_MAX:
                _check_credited(entry_index, credited, add)
                credited = []
            if len(refused) >= LOOKUP_BATCH_MAX:
                _check_refused(payments, refused, add)
                refused = []
        progress("payments", done)
    _check_credited(entry_index, credited, add)
    _check_refused(payments, refused, add)


def _check_credited(entry_index: EntryIndex, records: list[PaymentRecord], add: AddFinding) -> None:
    """The purchase a crediting record names must exist (it committed before the record was written)."""
    if not records:
        return
    refs = [r.entry_ref for r in records if r.entry_ref is not None]
    found = entry_index.entry_ids_at(sorted({(u, s) for u, s, _ in refs}))
    for record in records:
        ref = record.entry_ref
        if ref is None:
            problem = "names no entry"
        elif found.get((ref[0], ref[1])) != ref[2]:
            problem = f"names entry {ref[2]} at seq {ref[1]}, which does not exist"
        else:
            continue
        add(
            Finding(
                record.user_id or (ref[0] if ref else "unknown"),
                FindingKind.PAYMENT_WITHOUT_PURCHASE,
                f"Stripe event {record.event_id} credited payment {record.payment_id} but {problem}",
            )
        )


def _check_refused(payments: PaymentIndex, records: list[PaymentRecord], add: AddFinding) -> None:
    """A payment refused as not creditable (unknown package, bad metadata) and never credited since."""
    if not records:
        return
    purchased = payments.purchased_payments(sorted({r.payment_id for r in records if r.payment_id}))
    for record in records:
        if record.payment_id in purchased:
            continue
        if record.outcome == PRICE_MISMATCH_OUTCOME:
            finding = Finding(
                record.user_id or "unknown",
                FindingKind.PRICE_MISMATCH,
                f"Stripe payment {record.payment_id} was paid at another price than its package's catalog "
                f"price (event {record.event_id}) and not credited: refund it",
            )
        else:
            finding = Finding(
                record.user_id or "unknown",
                FindingKind.PAYMENT_WITHOUT_PURCHASE,
                f"Stripe payment {record.payment_id} was paid but not credited ({record.outcome}, "
                f"event {record.event_id}): credit or refund it",
            )
        add(finding)
