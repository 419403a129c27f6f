"""Reconciliation: check every account's chain and stored balance, and the records around them.

Pure over streamed pages: the caller hands in iterables of pages (from a parallel scan, a
fake, an export); nothing here collects entries. Memory is one small `ChainCheck` per account
(plus a bounded buffer of lookups), never proportional to the number of entries.

A consistent cut without locks: every account's `version` is read before its entries are.
Entries with `seq > version` were written after the cut and are ignored for this run. A
write moves the account and puts its entry in one transaction, so anything suspicious seen
in the stream (a gap, entries beyond the cut that the account no longer covers, entries of
an account the cut did not see, pages out of order) is confirmed by an exact re-check (a
strongly consistent read of the account, then its chain in seq order) before it is
reported. Concurrent writes therefore never raise a finding, and eventually consistent
scans (half the read cost) are enough.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from tokenledger.domain.chain import GENESIS_HASH, entry_hash
from tokenledger.domain.errors import ContentionExhausted, LedgerError
from tokenledger.domain.model import Account, Entry, EntryType
from tokenledger.domain.stripe_outcomes import CREDITING, REFUSED_PAYMENT, Outcome
from tokenledger.service.ports import AccountWrite, Guard, IdempotencyClaim, TransactionRefused

LOOKUP_BATCH_MAX = 100  # keys per batched existence lookup (DynamoDB BatchGetItem's limit)
FINDINGS_LISTED_MAX = 10_000  # findings listed in one report; all are counted in findings_by_kind
SETTLED_PREDICTIONS_LISTED_MAX = 10_000  # rows in one report (a report is one S3 object)
RECHECK_ENTRIES_MAX = 1_000_000  # entries one exact re-check reads before it gives up (a bug, not data)


class FindingKind(StrEnum):
    SEQ_GAP = "seq_gap"
    SEQ_DUPLICATE = "seq_duplicate"
    CHAIN_BREAK = "chain_break"
    BALANCE_MISMATCH = "balance_mismatch"
    VERSION_MISMATCH = "version_mismatch"
    NEGATIVE_BALANCE = "negative_balance"
    ORPHAN_ENTRIES = "orphan_entries"
    IDEMPOTENCY_DANGLING = "idempotency_dangling"
    PURCHASE_WITHOUT_PAYMENT = "purchase_without_payment"
    PAYMENT_WITHOUT_PURCHASE = "payment_without_purchase"
    PRICE_MISMATCH = "price_mismatch"  # paid at another price than the catalog's: not credited, refund it
    UNRECOVERED_CHARGEBACK = "unrecovered_chargeback"
    HASH_MISMATCH = "hash_mismatch"
    # A settled prediction paid out (and refunded) more than it took in plus the house's contribution.
    PREDICTION_OVERPAID = "prediction_overpaid"


# Kinds that say the ledger is wrong. An unrecovered chargeback is a loss the business must
# write off, reported every run, but the ledger recorded it correctly: it does not make the
# run unhealthy (else one old dispute would page on-call every day forever).
NOTICE_KINDS = frozenset({FindingKind.UNRECOVERED_CHARGEBACK})
# Kinds decided by the chain of one account: the ones an exact re-check confirms or clears.
CHAIN_KINDS = frozenset(
    {
        FindingKind.SEQ_GAP,
        FindingKind.SEQ_DUPLICATE,
        FindingKind.CHAIN_BREAK,
        FindingKind.BALANCE_MISMATCH,
        FindingKind.VERSION_MISMATCH,
        FindingKind.NEGATIVE_BALANCE,
        FindingKind.ORPHAN_ENTRIES,
        FindingKind.HASH_MISMATCH,
    }
)


@dataclass(frozen=True, slots=True)
class Finding:
    user_id: str
    kind: FindingKind
    detail: str

    def to_api(self) -> dict[str, str]:
        return {"user_id": self.user_id, "kind": str(self.kind), "detail": self.detail}


class ChainInconsistent(LedgerError):
    """Repair refused: the entries themselves are inconsistent; only new entries can fix that."""

    code = "chain_inconsistent"
    status = 409
    title = "The account's entries are inconsistent"


# ---------------------------------------------------------------------- ports
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


# Outcomes of a Stripe event record, as stored (tokenledger.domain.stripe_outcomes).
CREDITING_OUTCOMES = CREDITING
# Money taken and deliberately not credited: a payment without a purchase unless another
# event of the same payment credited it.
REFUSED_OUTCOMES = REFUSED_PAYMENT
PRICE_MISMATCH_OUTCOME = Outcome.PRICE_MISMATCH
STRIPE_EVENT_METADATA = "stripe_event"  # the purchase entry's metadata key naming its crediting event


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


# ---------------------------------------------------------------------- one account's chain
@dataclass(slots=True)
class ChainCheck:
    """The running check of one account's chain up to the cut `version`, fed in seq order."""

    user_id: str
    balance: int  # stored, at the cut
    version: int  # the cut
    exists: bool = True
    head_hash: str | None = None  # stored on the account, at the cut
    last_seq: int = 0
    computed: int = 0  # balance_after of the last entry fed
    entries: int = 0
    beyond_cut_seq: int = 0  # highest seq seen above the cut (written after it, or drift)
    disordered: bool = False  # the stream was not in seq order: only a re-check can tell
    unrecovered: int = 0
    unrecovered_entries: int = 0
    # The hash chain: the last stored hash fed (None: genesis, or only unhashed entries so far).
    last_hash: str | None = None
    unhashed: int = 0  # entries from before the chain (no `hash`), all before the first hashed one
    findings: list[tuple[FindingKind, str]] | None = None

    def _find(self, kind: FindingKind, detail: str) -> None:
        if self.findings is None:
            self.findings = []
        if all(k != kind for k, _ in self.findings):  # the first of each kind per account is enough
            self.findings.append((kind, detail))

    def feed(self, entry: Entry) -> bool:
        """Take the next entry; False if it lies beyond the cut (ignored this run)."""
        if entry.seq > self.version:
            self.beyond_cut_seq = max(self.beyond_cut_seq, entry.seq)
            return False
        if self.disordered:
            return True
        if entry.seq < self.last_seq:
            self.disordered = True
            return True
        if entry.seq == self.last_seq:
            self._find(FindingKind.SEQ_DUPLICATE, f"seq {entry.seq} appears more than once")
            return True
        if entry.seq > self.last_seq + 1:
            first, last = self.last_seq + 1, entry.seq - 1
            missing = f"{first}" if first == last else f"{first}..{last}"
            self._find(FindingKind.SEQ_GAP, f"seq {missing} missing before seq {entry.seq}")
            self.last_hash = entry.hash or self.last_hash  # the hash cannot be checked across a gap
        elif self.computed + entry.amount != entry.balance_after:
            self._find(
                FindingKind.CHAIN_BREAK,
                f"seq {entry.seq}: balance_after {entry.balance_after} != {self.computed} + ({entry.amount})",
            )
            self._check_hash(entry)
        else:
            self._check_hash(entry)
        if entry.balance_after < 0:
            self._find(FindingKind.NEGATIVE_BALANCE, f"seq {entry.seq}: balance_after {entry.balance_after}")
        self.last_seq = entry.seq
        self.computed = entry.balance_after
        self.entries += 1
        if entry.type == EntryType.CHARGEBACK and entry.unrecovered:
            self.unrecovered += entry.unrecovered
            self.unrecovered_entries += 1
        return True

    def _check_hash(self, entry: Entry) -> None:
        """The entry's `hash` must be the one its content and the previous hash give.

        Entries from before the chain carry none; they may only come first (a missing hash
        after a hashed entry is a stripped one). The first hashed entry chains on genesis.
        """
        if entry.hash is None:
            if self.last_hash is None:
                self.unhashed += 1
                return
            self._find(FindingKind.HASH_MISMATCH, f"seq {entry.seq}: no hash after hashed entries")
            return
        expected = entry_hash(entry, self.last_hash or GENESIS_HASH)
        if entry.hash != expected:
            self._find(FindingKind.HASH_MISMATCH, f"seq {entry.seq}: stored hash does not match its content or chain")
        self.last_hash = entry.hash

    def finish(self) -> None:
        """The checks that need the whole chain up to the cut."""
        if self.disordered:
            return
        if not self.exists:
            if self.entries:
                self._find(FindingKind.ORPHAN_ENTRIES, f"{self.entries} entries (seq 1..{self.last_seq}), no account")
            return
        if self.last_seq != self.version:
            self._find(
                FindingKind.VERSION_MISMATCH,
                f"version {self.version} but the chain ends at seq {self.last_seq}",
            )
        if self.balance != self.computed:
            self._find(
                FindingKind.BALANCE_MISMATCH,
                f"stored balance {self.balance} != chain balance {self.computed} (at seq {self.last_seq})",
            )
        if self.balance < 0:
            self._find(FindingKind.NEGATIVE_BALANCE, f"stored balance {self.balance}")
        if self.head_hash is not None and self.last_seq == self.version and self.head_hash != self.last_hash:
            self._find(
                FindingKind.HASH_MISMATCH,
                f"the account's head hash is not the hash of seq {self.last_seq}",
            )
        if self.unrecovered:
            self._find(
                FindingKind.UNRECOVERED_CHARGEBACK,
                f"{self.unrecovered} tokens not recovered over {self.unrecovered_entries} chargeback entries",
            )

    @property
    def has_chain_findings(self) -> bool:
        """A chain finding from the stream: confirmed by an exact re-check before it is reported."""
        return any(kind in CHAIN_KINDS for kind, _ in self.findings or ())


def check_account_exactly(probe: AccountProbe, user_id: str) -> tuple[ChainCheck, Account | None]:
    """The exact check of one account: a consistent read of it, then its chain in seq order.

    Entries above the version read are re-checked against a second read of the account: a
    committed entry always moved its account in the same transaction, so an account still
    behind its chain after that read is drift, not a concurrent write.
    """
    account = probe.get_account(user_id)
    check = ChainCheck(
        user_id=user_id,
        balance=account.balance if account else 0,
        version=account.version if account else 0,
        exists=account is not None,
        head_hash=account.head_hash if account else None,
    )
    for count, entry in enumerate(probe.iter_chain(user_id)):
        if count >= RECHECK_ENTRIES_MAX:
            raise RuntimeError(f"account {user_id} has more than {RECHECK_ENTRIES_MAX} entries")
        check.feed(entry)
    if check.disordered:
        raise RuntimeError(f"the chain of {user_id} came back out of seq order from an ordered query")
    check.finish()
    if check.beyond_cut_seq:
        later = probe.get_account(user_id)
        if later is None:
            check._find(FindingKind.ORPHAN_ENTRIES, f"entries up to seq {check.beyond_cut_seq} exist, no account")
        elif later.version < check.beyond_cut_seq:
            check._find(
                FindingKind.VERSION_MISMATCH,
                f"entries up to seq {check.beyond_cut_seq} exist but the account is at version {later.version}",
            )
    return check, account


# ---------------------------------------------------------------------- the fleet
@dataclass
class PartialReport:
    """What one audit over a range of segments found; partial reports merge into the report."""

    accounts_checked: int = 0
    entries_checked: int = 0
    tokens_outstanding: int = 0
    totals_by_type: dict[str, int] = field(default_factory=lambda: {str(t): 0 for t in EntryType})
    unrecovered_chargebacks: int = 0
    findings: list[Finding] = field(default_factory=list)
    findings_by_kind: Counter[str] = field(default_factory=Counter)
    checks_skipped: list[str] = field(default_factory=list)
    exact_rechecks: int = 0  # accounts read again exactly (suspicion, concurrent writes, misaligned segments)
    # Per prediction (counterparty `prediction:<id>`): tokens paid out and refunded, from the entries.
    prediction_flows: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        self.findings_by_kind[str(finding.kind)] += 1
        if len(self.findings) < FINDINGS_LISTED_MAX:
            self.findings.append(finding)

    def to_json(self) -> dict[str, Any]:
        return {
            "accounts_checked": self.accounts_checked,
            "entries_checked": self.entries_checked,
            "tokens_outstanding": self.tokens_outstanding,
            "totals_by_type": dict(self.totals_by_type),
            "unrecovered_chargebacks": self.unrecovered_chargebacks,
            "inconsistencies": [f.to_api() for f in self.findings],
            "findings_by_kind": dict(self.findings_by_kind),
            "checks_skipped": list(self.checks_skipped),
            "exact_rechecks": self.exact_rechecks,
            "prediction_flows": {k: dict(v) for k, v in self.prediction_flows.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartialReport:
        part = cls(
            accounts_checked=int(data["accounts_checked"]),
            entries_checked=int(data["entries_checked"]),
            tokens_outstanding=int(data["tokens_outstanding"]),
            unrecovered_chargebacks=int(data["unrecovered_chargebacks"]),
            checks_skipped=list(data.get("checks_skipped", [])),
            exact_rechecks=int(data.get("exact_rechecks", 0)),
        )
        part.totals_by_type.update({k: int(v) for k, v in data["totals_by_type"].items()})
        part.findings = [Finding(f["user_id"], FindingKind(f["kind"]), f["detail"]) for f in data["inconsistencies"]]
        part.findings_by_kind = Counter({k: int(v) for k, v in data.get("findings_by_kind", {}).items()})
        part.prediction_flows = {
            k: {kind: int(n) for kind, n in v.items()} for k, v in data.get("prediction_flows", {}).items()
        }
        return part

    def merge(self, other: PartialReport) -> None:
        self.accounts_checked += other.accounts_checked
        self.entries_checked += other.entries_checked
        self.tokens_outstanding += other.tokens_outstanding
        self.unrecovered_chargebacks += other.unrecovered_chargebacks
        self.exact_rechecks += other.exact_rechecks
        for kind, total in other.totals_by_type.items():
            self.totals_by_type[kind] = self.totals_by_type.get(kind, 0) + total
        seen = {(f.user_id, f.kind, f.detail) for f in self.findings}
        for finding in other.findings:
            if (finding.user_id, finding.kind, finding.detail) not in seen and len(self.findings) < FINDINGS_LISTED_MAX:
                self.findings.append(finding)
        self.findings_by_kind.update(other.findings_by_kind)
        self.checks_skipped = sorted(set(self.checks_skipped) | set(other.checks_skipped))
        for prediction_id, flows in other.prediction_flows.items():
            mine = self.prediction_flows.setdefault(prediction_id, {"paid_out": 0, "refunded": 0})
            for kind, tokens in flows.items():
                mine[kind] = mine.get(kind, 0) + tokens

    @property
    def healthy(self) -> bool:
        return not any(kind not in NOTICE_KINDS for kind, n in self.findings_by_kind.items() if n)


Progress = Callable[[str, int], None]  # (phase, items done in that phase so far)


def _no_progress(_phase: str, _done: int) -> None:
    return None


class Reconciler:
    """The fleet audit over streamed pages. One instance per run (or per segment range)."""

    def __init__(
        self,
        *,
        probe: AccountProbe,
        entry_index: EntryIndex,
        payments: PaymentIndex | None,
        progress: Progress = _no_progress,
    ) -> None:
        self.probe = probe
        self.entry_index = entry_index
        self.payments = payments
        self.progress = progress
        self.report = PartialReport()
        self._checks: dict[str, ChainCheck] = {}
        self._strays: set[str] = set()  # users with entries but no account in the cut
        self._purchases: list[Entry] = []  # bounded buffer of purchases waiting for their lookup

    # -------------------------------------------------------------- phase 1: the cut
    def take_cut(self, account_pages: Iterable[Sequence[Account]], snapshot: Callable[[Account], None]) -> None:
        """Read every account first: its version is this run's cut for it."""
        for page in account_pages:
            for account in page:
                self._checks[account.user_id] = ChainCheck(
                    user_id=account.user_id,
                    balance=account.balance,
                    version=account.version,
                    head_hash=account.head_hash,
                )
                self.report.accounts_checked += 1
                self.report.tokens_outstanding += account.balance
                snapshot(account)
            self.progress("accounts", self.report.accounts_checked)

    # -------------------------------------------------------------- phase 2: the entries
    def check_entries(self, entry_pages: Iterable[Sequence[Entry]]) -> None:
        for page in entry_pages:
            for entry in page:
                check = self._checks.get(entry.user_id)
                if check is None:
                    self._strays.add(entry.user_id)
                    continue
                if not check.feed(entry):
                    continue
                self._count(entry)
            self.progress("entries", self.report.entries_checked)
        self._flush_purchases()
        self._settle_accounts()

    def _count(self, entry: Entry) -> None:
        self.report.entries_checked += 1
        self.report.totals_by_type[str(entry.type)] += entry.amount
        if entry.type == EntryType.CHARGEBACK and entry.unrecovered:
            self.report.unrecovered_chargebacks += entry.unrecovered
        if entry.type in (EntryType.PAYOUT, EntryType.REFUND) and entry.counterparty.startswith("prediction:"):
            flows = self.report.prediction_flows.setdefault(entry.counterparty[11:], {"paid_out": 0, "refunded": 0})
            flows["paid_out" if entry.type == EntryType.PAYOUT else "refunded"] += entry.amount
        if entry.type == EntryType.PURCHASE and self.payments is not None:
            self._purchases.append(entry)
            if len(self._purchases) >= LOOKUP_BATCH_MAX:
                self._flush_purchases()

    def _flush_purchases(self) -> None:
        if not self._purchases or self.payments is None:
            return
        for entry, problem in purchase_problems(self.payments, self._purchases):
            self.report.add(Finding(entry.user_id, FindingKind.PURCHASE_WITHOUT_PAYMENT, problem))
        self._purchases.clear()

    def _settle_accounts(self) -> None:
        """Finish every account; confirm anything suspicious with an exact re-check."""
        for user_id, streamed in self._checks.items():
            streamed.finish()
            check = streamed
            if streamed.disordered or streamed.has_chain_findings:
                check, _ = self._recheck(user_id)
                if streamed.entries == 0 and streamed.version > 0:
                    # Its entries were in no page of this range (segments not lined up across
                    # the tables, or a lagging scan): count them up to the cut from the chain.
                    for entry in self.probe.iter_chain(user_id):
                        if entry.seq > streamed.version:
                            break
                        self._count(entry)
            elif streamed.beyond_cut_seq:
                # Entries above the cut: written after it (fine), or the account item is behind
                # its chain (drift). The transaction that wrote them moved the account too.
                later = self.probe.get_account(user_id)
                if later is None or later.version < streamed.beyond_cut_seq:
                    check, _ = self._recheck(user_id)
            for kind, detail in check.findings or ():
                self.report.add(Finding(user_id, kind, detail))
        self._checks.clear()
        for user_id in self._strays:
            # Entries of an account this cut did not see: opened after it (a concurrent write),
            # held by another range's cut (which counts them), or orphans. Checked, not counted.
            check, _ = self._recheck(user_id)
            for kind, detail in check.findings or ():
                self.report.add(Finding(user_id, kind, detail))
        self._strays.clear()
        self._flush_purchases()

    def _recheck(self, user_id: str) -> tuple[ChainCheck, Account | None]:
        self.report.exact_rechecks += 1
        return check_account_exactly(self.probe, user_id)

    # -------------------------------------------------------------- phase 3: idempotency records
    def check_idempotency(self, record_pages: Iterable[Sequence[IdempotencyRecord]]) -> None:
        """Every entry an idempotency record names must exist (they are written in one transaction)."""
        pending: list[tuple[IdempotencyRecord, tuple[str, int, str]]] = []
        done = 0
        for page in record_pages:
            for record in page:
                done += 1
                for ref in record.entry_refs:
                    pending.append((record, ref))
                    if len(pending) >= LOOKUP_BATCH_MAX:
                        self._check_refs(pending)
                        pending = []
            self.progress("idempotency", done)
        self._check_refs(pending)

    def _check_refs(self, pending: list[tuple[IdempotencyRecord, tuple[str, int, str]]]) -> None:
        if not pending:
            return
        found = self.entry_index.entry_ids_at(sorted({(u, s) for _, (u, s, _) in pending}))
        for record, (user_id, seq, entry_id) in pending:
            stored = found.get((user_id, seq))
            if stored != entry_id:
                what = "does not exist" if stored is None else f"holds entry {stored} instead"
                self.report.add(
                    Finding(
                        user_id,
                        FindingKind.IDEMPOTENCY_DANGLING,
                        f"idempotency record {record.pk} names entry {entry_id} at seq {seq}, which {what}",
                    )
                )

    # -------------------------------------------------------------- phase 4: Stripe payments
    def check_payments(self, payment_pages: Iterable[Sequence[PaymentRecord]] | None) -> None:
        """Every credited Stripe payment has its purchase entry; refused payments are reported."""
        if payment_pages is None or self.payments is None:
            self.report.checks_skipped.append("stripe_payments")
            return
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
                    self._check_credited(credited)
                    credited = []
                if len(refused) >= LOOKUP_BATCH_MAX:
                    self._check_refused(refused)
                    refused = []
            self.progress("payments", done)
        self._check_credited(credited)
        self._check_refused(refused)

    def _check_credited(self, records: list[PaymentRecord]) -> None:
        """The purchase a crediting record names must exist (it committed before the record was written)."""
        if not records:
            return
        refs = [r.entry_ref for r in records if r.entry_ref is not None]
        found = self.entry_index.entry_ids_at(sorted({(u, s) for u, s, _ in refs}))
        for record in records:
            ref = record.entry_ref
            if ref is None:
                problem = "names no entry"
            elif found.get((ref[0], ref[1])) != ref[2]:
                problem = f"names entry {ref[2]} at seq {ref[1]}, which does not exist"
            else:
                continue
            self.report.add(
                Finding(
                    record.user_id or (ref[0] if ref else "unknown"),
                    FindingKind.PAYMENT_WITHOUT_PURCHASE,
                    f"Stripe event {record.event_id} credited payment {record.payment_id} but {problem}",
                )
            )

    def _check_refused(self, records: list[PaymentRecord]) -> None:
        """A payment refused as not creditable (unknown package, bad metadata) and never credited since."""
        if not records or self.payments is None:
            return
        purchased = self.payments.purchased_payments(sorted({r.payment_id for r in records if r.payment_id}))
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
            self.report.add(finding)


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


# ---------------------------------------------------------------------- the report
def settled_predictions(part: PartialReport, settlements: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per settled prediction: taken in, paid out, refunded, house contribution; overpayment is a finding.

    Taken in and the house contribution come from the settlement item (the stakes summed after
    the close, when nothing can change them any more); paid out and refunded from the entries
    scanned in this run (up to each account's cut), so a settlement still running is partial.
    """
    rows = []
    for record in settlements:
        prediction_id = str(record["prediction_id"])
        flows = part.prediction_flows.get(prediction_id, {})
        row: dict[str, Any] = {
            "prediction_id": prediction_id,
            "settlement_id": record.get("settlement_id"),
            "outcome": record.get("outcome"),
            "status": record.get("status"),
            "taken_in": int(record.get("taken_in", 0)),
            "house_contribution": int(record.get("house_contribution", 0)),
            "paid_out": int(flows.get("paid_out", 0)),
            "refunded": int(flows.get("refunded", 0)),
        }
        covered = row["taken_in"] + row["house_contribution"]
        row["overpaid"] = row["paid_out"] + row["refunded"] > covered
        if row["overpaid"]:
            part.add(
                Finding(
                    f"prediction:{prediction_id}",
                    FindingKind.PREDICTION_OVERPAID,
                    f"paid out {row['paid_out']} and refunded {row['refunded']}, but took in {row['taken_in']}"
                    f" and the house contributed {row['house_contribution']}",
                )
            )
        rows.append(row)
        if len(rows) >= SETTLED_PREDICTIONS_LISTED_MAX:
            break
    return sorted(rows, key=lambda r: r["prediction_id"])


def build_report(
    part: PartialReport, *, run_id: str, started_at: str, finished_at: str, snapshot_key: str
) -> dict[str, Any]:
    """The contract's report shape (plus `findings_by_kind` and `checks_skipped`)."""
    body = part.to_json()
    return {
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "accounts_checked": body["accounts_checked"],
        "entries_checked": body["entries_checked"],
        "tokens_outstanding": body["tokens_outstanding"],
        "totals_by_type": body["totals_by_type"],
        "inconsistencies": body["inconsistencies"],
        "unrecovered_chargebacks": body["unrecovered_chargebacks"],
        "healthy": part.healthy,
        "snapshot_key": snapshot_key,
        "findings_by_kind": body["findings_by_kind"],
        "checks_skipped": body["checks_skipped"],
        "exact_rechecks": body["exact_rechecks"],
    }


def snapshot_line(account: Account) -> str:
    """One JSON Lines record of the balance snapshot, which is also the run's digest of head hashes."""
    return json.dumps(
        {
            "user_id": account.user_id,
            "balance": account.balance,
            "version": account.version,
            "head_hash": account.head_hash,
        },
        separators=(",", ":"),
    )


# ---------------------------------------------------------------------- one account (HTTP)
def audit_account(probe: AccountProbe, user_id: str, payments: PaymentIndex | None = None) -> dict[str, Any]:
    """`GET /v1/admin/accounts/{user_id}/audit`: the same checks, exactly, on one account."""
    check, account = check_account_exactly(probe, user_id)
    inconsistencies = [{"kind": str(k), "detail": d} for k, d in check.findings or ()]
    if payments is not None:
        purchases = [e for e in probe.iter_chain(user_id) if e.type == EntryType.PURCHASE and e.seq <= check.version]
        for _, problem in purchase_problems(payments, purchases):
            inconsistencies.append({"kind": str(FindingKind.PURCHASE_WITHOUT_PAYMENT), "detail": problem})
    return {
        "user_id": user_id,
        "stored_balance": account.balance if account else 0,
        "computed_balance": check.computed,
        "version": account.version if account else 0,
        "entries_checked": check.entries,
        "consistent": not any(i["kind"] not in NOTICE_KINDS for i in inconsistencies),
        "inconsistencies": inconsistencies,
    }


@dataclass(frozen=True, slots=True)
class RepairPlan:
    before: Account
    after: Account

    @property
    def needed(self) -> bool:
        before, after = self.before, self.after
        return (before.balance, before.version, before.head_hash) != (after.balance, after.version, after.head_hash)


def plan_repair(probe: AccountProbe, user_id: str, *, now: str) -> RepairPlan:
    """The account item rebuilt from its chain; refuses if the chain itself is broken."""
    before = probe.get_account(user_id) or Account(user_id=user_id)
    check = ChainCheck(user_id=user_id, balance=0, version=1 << 62)
    first_created: str | None = None
    hash_at_version: str | None = None
    for count, entry in enumerate(probe.iter_chain(user_id)):
        if count >= RECHECK_ENTRIES_MAX:
            raise RuntimeError(f"account {user_id} has more than {RECHECK_ENTRIES_MAX} entries")
        first_created = first_created or entry.created_at
        check.feed(entry)
        if entry.seq == before.version:
            hash_at_version = entry.hash
    # The account's head anchors its chain: a chain that verifies from genesis but not to the
    # head the account holds was rewritten (or the head was). Reported, never adopted.
    if before.head_hash is not None and hash_at_version != before.head_hash:
        check._find(FindingKind.HASH_MISMATCH, f"the account's head hash is not the hash of seq {before.version}")
    broken = [(k, d) for k, d in check.findings or () if k in CHAIN_KINDS]
    if broken:
        raise ChainInconsistent(
            "the entries are inconsistent; the account item cannot be rebuilt from them",
            inconsistencies=[{"kind": str(k), "detail": d} for k, d in broken],
        )
    after = Account(
        user_id=user_id,
        balance=check.computed,
        version=check.last_seq,
        created_at=before.created_at or first_created or now,
        updated_at=max(now, before.updated_at or now),
        head_hash=check.last_hash,
    )
    return RepairPlan(before=before, after=after)


# ---------------------------------------------------------------------- a run, whole or fanned out
RECONCILE_SEGMENTS_MAX = 1_000
RANGES_MAX = 100  # invocations of one fanned-out run (the Map state's items)


class LedgerPages(Protocol):
    """The tables as streams of pages, for the segments [start, end) of a `total`-way scan."""

    def account_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[Account]]: ...

    def entry_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[Entry]]: ...

    def idempotency_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[IdempotencyRecord]]: ...

    def payment_pages(self, start: int, end: int, total: int) -> Iterable[Sequence[PaymentRecord]] | None:
        """None when no Stripe payment record exists to compare with (the check is skipped)."""
        ...


class ReportSink(Protocol):
    def snapshot(self, key: str) -> Any:
        """A context manager yielding a callable that takes one `Account` per call."""
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


def split_segments(total: int, ranges: int) -> list[tuple[int, int]]:
    """[0, total) cut into `ranges` contiguous ranges of near-equal size."""
    if not 1 <= total <= RECONCILE_SEGMENTS_MAX:
        raise ValueError(f"segments must be 1..{RECONCILE_SEGMENTS_MAX}")
    ranges = max(1, min(ranges, total, RANGES_MAX))
    bounds = [total * i // ranges for i in range(ranges + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(ranges)]


class ReconcileRun:
    """Plan, audit segment ranges, merge: in one invocation (`run`) or fanned out (Step Functions)."""

    def __init__(
        self,
        *,
        pages: LedgerPages,
        probe: AccountProbe,
        entry_index: EntryIndex,
        payments: PaymentIndex | None,
        sink: ReportSink,
        keys: ReportKeys,
        clock: Callable[[], str],
        new_id: Callable[[], str],
        progress: Progress = _no_progress,
        settlements: Callable[[], Iterable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.settlements = settlements
        self.pages = pages
        self.probe = probe
        self.entry_index = entry_index
        self.payments = payments
        self.sink = sink
        self.keys = keys
        self.clock = clock
        self.new_id = new_id
        self.progress = progress

    def plan(self, *, total_segments: int, ranges: int) -> dict[str, Any]:
        return {
            "run_id": self.new_id(),
            "started_at": self.clock(),
            "total_segments": total_segments,
            "ranges": [{"start": s, "end": e} for s, e in split_segments(total_segments, ranges)],
        }

    def _audit(self, start: int, end: int, total: int, snapshot_key: str) -> PartialReport:
        reconciler = Reconciler(
            probe=self.probe, entry_index=self.entry_index, payments=self.payments, progress=self.progress
        )
        with self.sink.snapshot(snapshot_key) as snapshot:
            reconciler.take_cut(self.pages.account_pages(start, end, total), snapshot)
        reconciler.check_entries(self.pages.entry_pages(start, end, total))
        reconciler.check_idempotency(self.pages.idempotency_pages(start, end, total))
        reconciler.check_payments(self.pages.payment_pages(start, end, total))
        return reconciler.report

    def audit_range(self, *, run_id: str, start: int, end: int, total_segments: int) -> dict[str, Any]:
        """One Map item: audit segments [start, end) and store the partial report."""
        if not 0 <= start < end <= total_segments <= RECONCILE_SEGMENTS_MAX:
            raise ValueError("need 0 <= start < end <= total_segments")
        part = self._audit(start, end, total_segments, self.keys.part_snapshot(run_id, start, end))
        self.sink.put_json(self.keys.part(run_id, start, end), part.to_json())
        return {"start": start, "end": end, "accounts_checked": part.accounts_checked}

    def merge(self, *, run_id: str, started_at: str, ranges: Sequence[tuple[int, int]]) -> dict[str, Any]:
        """The final step: sum the partial reports, join the snapshots, publish the report."""
        total = PartialReport()
        for start, end in ranges:
            data = self.sink.get_json(self.keys.part(run_id, start, end))
            if data is None:
                raise RuntimeError(f"run {run_id}: the part for segments {start}-{end} is missing")
            total.merge(PartialReport.from_json(data))
        snapshot_key = self.keys.snapshot(run_id, started_at)
        self.sink.concatenate([self.keys.part_snapshot(run_id, s, e) for s, e in ranges], snapshot_key)
        return self._publish(total, run_id=run_id, started_at=started_at, snapshot_key=snapshot_key)

    def run(self, *, total_segments: int) -> dict[str, Any]:
        """The whole audit in this invocation (all segments, scanned in parallel threads)."""
        plan = self.plan(total_segments=total_segments, ranges=1)
        run_id, started_at = plan["run_id"], plan["started_at"]
        snapshot_key = self.keys.snapshot(run_id, started_at)
        part = self._audit(0, total_segments, total_segments, snapshot_key)
        return self._publish(part, run_id=run_id, started_at=started_at, snapshot_key=snapshot_key)

    def _publish(self, part: PartialReport, *, run_id: str, started_at: str, snapshot_key: str) -> dict[str, Any]:
        predictions = settled_predictions(part, self.settlements()) if self.settlements is not None else None
        report = build_report(
            part, run_id=run_id, started_at=started_at, finished_at=self.clock(), snapshot_key=snapshot_key
        )
        if predictions is not None:
            report["settled_predictions"] = predictions
        self.sink.publish(report)
        return report


# ---------------------------------------------------------------------- repair (HTTP)
REPAIR_RECORD_PREFIX = "repair"


class AccountWriter(Protocol):
    def commit(
        self, writes: Sequence[AccountWrite], *, idempotency: IdempotencyClaim | None, guards: Sequence[Guard] = ()
    ) -> None: ...


def _balance_view(account: Account) -> dict[str, int]:
    return {"balance": account.balance, "version": account.version}


def repair_account(
    probe: AccountProbe,
    writer: AccountWriter,
    user_id: str,
    *,
    actor: str,
    reason: str | None,
    now: str,
    record_id: str,
) -> dict[str, Any]:
    """`POST /v1/admin/accounts/{user_id}/repair`: rebuild the account item from its chain.

    One transaction: the account update, conditioned on the version and balance just read
    (a write that lands in between refuses it: the caller retries), and the audit record
    (`repair|<user_id>|<record_id>` in the idempotency table, no TTL: kept forever) saying
    who asked, why, and what changed. Entries are only read.
    """
    plan = plan_repair(probe, user_id, now=now)
    body: dict[str, Any] = {
        "user_id": user_id,
        "before": _balance_view(plan.before),
        "after": _balance_view(plan.after),
        "repaired": False,
    }
    if not plan.needed:
        body["after"] = body["before"]
        return body
    record_pk = f"{REPAIR_RECORD_PREFIX}|{user_id}|{record_id}"
    record = Guard(
        name="repair",
        pk=record_pk,
        attributes={
            "kind": "repair",
            "user_id": user_id,
            "actor": actor,
            "reason": reason or "",
            "at": now,
            "before": _balance_view(plan.before),
            "after": _balance_view(plan.after),
            "account_existed": plan.before.exists or plan.before.version > 0,
        },
    )
    try:
        writer.commit(
            [AccountWrite(before=plan.before, after=plan.after, entries=())], idempotency=None, guards=[record]
        )
    except TransactionRefused:
        raise ContentionExhausted("the account changed while it was being repaired; audit it again and retry") from None
    body["repaired"] = True
    body["audit_record"] = record_pk
    return body
