"""The scheduled run over the whole ledger: the cut, the chains streamed by, the records around them.

`Reconciler` is one audit over streamed pages (one per run, or per range of segments): it takes
the cut from the accounts, feeds each entry to its account's `ChainCheck`, confirms anything
suspicious by an exact re-check, then checks the idempotency and Stripe records.
`ReconcileRun` plans, audits ranges and merges them, in one invocation or fanned out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from tokenledger.domain.model import Account, Entry, EntryType
from tokenledger.service.reconcile.chain import ChainCheck, check_account_exactly
from tokenledger.service.reconcile.findings import Finding, FindingKind
from tokenledger.service.reconcile.ports import (
    LOOKUP_BATCH_MAX,
    AccountProbe,
    EntryIndex,
    IdempotencyRecord,
    LedgerPages,
    PaymentIndex,
    PaymentRecord,
    Progress,
    ReportKeys,
    ReportSink,
)
from tokenledger.service.reconcile.records import check_idempotency_records, check_payment_records, purchase_problems
from tokenledger.service.reconcile.report import PartialReport, build_report, settled_predictions, snapshot_line


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
        check_idempotency_records(self.entry_index, record_pages, self.report.add, self.progress)

    # -------------------------------------------------------------- phase 4: Stripe payments
    def check_payments(self, payment_pages: Iterable[Sequence[PaymentRecord]] | None) -> None:
        """Every credited Stripe payment has its purchase entry; refused payments are reported."""
        if payment_pages is None or self.payments is None:
            self.report.checks_skipped.append("stripe_payments")
            return
        check_payment_records(self.payments, self.entry_index, payment_pages, self.report.add, self.progress)


RECONCILE_SEGMENTS_MAX = 1_000
RANGES_MAX = 100  # invocations of one fanned-out run (the Map state's items)


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
        with self.sink.snapshot(snapshot_key) as write:
            reconciler.take_cut(
                self.pages.account_pages(start, end, total), lambda account: write(snapshot_line(account))
            )
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
