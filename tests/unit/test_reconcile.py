"""The reconciliation checks, pure over pages: fakes for the tables, no moto."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import replace

import pytest

from tokenledger.adapters.scan import entry_refs_of
from tokenledger.domain.model import Account, Entry, EntryDraft, EntryType, apply_drafts
from tokenledger.service.reconcile.chain import ChainCheck
from tokenledger.service.reconcile.findings import Finding, FindingKind
from tokenledger.service.reconcile.fleet import Reconciler, split_segments
from tokenledger.service.reconcile.ports import IdempotencyRecord, PaymentRecord, StripeEventSeen
from tokenledger.service.reconcile.report import FINDINGS_LISTED_MAX, PartialReport

NOW = "2026-11-25T03:00:00.000Z"


def chain(user_id: str, amounts: Sequence[int]) -> tuple[Account, list[Entry]]:
    drafts = [
        EntryDraft(type=EntryType.GRANT if a > 0 else EntryType.COMMITMENT, amount=a, counterparty="admin")
        for a in amounts
    ]
    ids = [f"{user_id}-e{i}" for i in range(len(drafts))]
    account, entries = apply_drafts(Account(user_id=user_id), drafts, entry_ids=ids, now=NOW)
    return account, entries


class FakeLedger:
    """Accounts and entries in dicts: the exact reads (`AccountProbe`, `EntryIndex`) and pages."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.entries: dict[tuple[str, int], Entry] = {}
        self.exact_reads: list[str] = []

    def add(self, account: Account, entries: list[Entry]) -> None:
        self.accounts[account.user_id] = account
        for entry in entries:
            self.entries[(entry.user_id, entry.seq)] = entry

    def get_account(self, user_id: str) -> Account | None:
        self.exact_reads.append(user_id)
        return self.accounts.get(user_id)

    def iter_chain(self, user_id: str) -> Iterator[Entry]:
        yield from sorted((e for (u, _), e in self.entries.items() if u == user_id), key=lambda e: e.seq)

    def entry_ids_at(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        return {k: self.entries[k].entry_id for k in keys if k in self.entries}

    def account_pages(self) -> list[list[Account]]:
        return [list(self.accounts.values())]

    def entry_pages(self) -> list[list[Entry]]:
        return [sorted(self.entries.values(), key=lambda e: (e.user_id, e.seq))]


class FakePayments:
    def __init__(self, events: dict[str, StripeEventSeen], purchased: set[str] | None = None) -> None:
        self.events = events
        self.purchased = purchased or set()

    def stripe_events(self, event_ids: Sequence[str]) -> dict[str, StripeEventSeen]:
        return {e: self.events[e] for e in event_ids if e in self.events}

    def purchased_payments(self, payment_ids: Sequence[str]) -> set[str]:
        return self.purchased & set(payment_ids)


def audit(ledger: FakeLedger, entry_pages: list[list[Entry]] | None = None) -> PartialReport:
    reconciler = Reconciler(probe=ledger, entry_index=ledger, payments=None)
    reconciler.take_cut(ledger.account_pages(), lambda _account: None)
    reconciler.check_entries(entry_pages if entry_pages is not None else ledger.entry_pages())
    return reconciler.report


def found(report: PartialReport) -> set[tuple[str, str]]:
    return {(f.user_id, str(f.kind)) for f in report.findings}


# ---------------------------------------------------------------- one chain
def test_a_chain_fed_in_order_is_clean_and_computes_the_balance() -> None:
    account, entries = chain("a", [50, -20, 5])
    check = ChainCheck(user_id="a", balance=account.balance, version=account.version)
    for entry in entries:
        assert check.feed(entry)
    check.finish()
    assert check.findings is None and (check.computed, check.entries, check.last_seq) == (35, 3, 3)


def test_a_repeated_seq_is_a_duplicate() -> None:
    account, entries = chain("a", [50, -20])
    check = ChainCheck(user_id="a", balance=account.balance, version=account.version)
    for entry in [entries[0], entries[1], entries[1]]:
        check.feed(entry)
    check.finish()
    assert [k for k, _ in check.findings or ()] == [FindingKind.SEQ_DUPLICATE]


def test_a_gap_names_the_missing_seqs_and_skips_the_chain_check_across_it() -> None:
    account, entries = chain("a", [50, -20, 5, 1])
    check = ChainCheck(user_id="a", balance=account.balance, version=account.version)
    for entry in [entries[0], entries[3]]:
        check.feed(entry)
    check.finish()
    assert check.findings == [(FindingKind.SEQ_GAP, "seq 2..3 missing before seq 4")]


def test_entries_beyond_the_cut_are_ignored() -> None:
    _, entries = chain("a", [50, -20, 5])
    check = ChainCheck(user_id="a", balance=30, version=2)  # the cut was taken before seq 3
    assert [check.feed(e) for e in entries] == [True, True, False]
    check.finish()
    assert check.findings is None and check.beyond_cut_seq == 3


# ---------------------------------------------------------------- the fleet
def test_a_healthy_fleet_counts_everything_and_reads_nothing_exactly() -> None:
    ledger = FakeLedger()
    for user_id, amounts in {"a": [50, -20], "b": [7], "c": []}.items():
        ledger.add(*chain(user_id, amounts))
    report = audit(ledger)
    assert report.findings == [] and report.healthy
    assert (report.accounts_checked, report.entries_checked, report.tokens_outstanding) == (3, 3, 37)
    assert report.totals_by_type["grant"] == 57 and report.totals_by_type["commitment"] == -20
    assert ledger.exact_reads == []


def test_pages_out_of_seq_order_are_settled_by_an_exact_recheck() -> None:
    ledger = FakeLedger()
    ledger.add(*chain("a", [50, -20, 5]))
    pages = [list(reversed(ledger.entry_pages()[0]))]
    report = audit(ledger, pages)
    assert report.findings == [] and report.entries_checked == 3
    assert ledger.exact_reads == ["a"]


def test_a_write_after_the_cut_raises_nothing() -> None:
    ledger = FakeLedger()
    account, entries = chain("a", [50, -20])
    ledger.add(account, entries)
    reconciler = Reconciler(probe=ledger, entry_index=ledger, payments=None)
    reconciler.take_cut(ledger.account_pages(), lambda _account: None)
    # A commitment lands after the cut: new entry, account moved, in one transaction.
    later_account, later_entries = apply_drafts(
        account, [EntryDraft(type=EntryType.COMMITMENT, amount=-5, counterparty="p")], entry_ids=["x"], now=NOW
    )
    ledger.add(later_account, later_entries)
    # ... and a new account opens after the cut.
    ledger.add(*chain("new", [9]))
    reconciler.check_entries(ledger.entry_pages())
    assert reconciler.report.findings == []
    assert reconciler.report.accounts_checked == 1 and reconciler.report.tokens_outstanding == 30


def test_ranges_whose_segments_do_not_line_up_still_count_every_entry_once() -> None:
    # Accounts scanned by one range, their entries by another: each side settles exactly.
    ledger = FakeLedger()
    ledger.add(*chain("a", [50, -20]))
    ledger.add(*chain("b", [7]))
    holds_accounts = Reconciler(probe=ledger, entry_index=ledger, payments=None)
    holds_accounts.take_cut(ledger.account_pages(), lambda _account: None)
    holds_accounts.check_entries([])
    holds_entries = Reconciler(probe=ledger, entry_index=ledger, payments=None)
    holds_entries.take_cut([], lambda _account: None)
    holds_entries.check_entries(ledger.entry_pages())
    merged = holds_accounts.report
    merged.merge(holds_entries.report)
    assert merged.findings == []
    assert (merged.accounts_checked, merged.entries_checked, merged.tokens_outstanding) == (2, 3, 37)
    assert merged.totals_by_type["grant"] == 57 and merged.totals_by_type["commitment"] == -20
    assert merged.exact_rechecks == 4


def test_an_account_item_behind_its_chain_is_drift_not_a_concurrent_write() -> None:
    ledger = FakeLedger()
    account, entries = chain("a", [50, -20])
    ledger.add(replace(account, version=1, balance=50, head_hash=entries[0].hash), entries)
    assert found(audit(ledger)) == {("a", "version_mismatch")}


def test_entries_of_no_account_are_orphans() -> None:
    ledger = FakeLedger()
    _, entries = chain("ghost", [5, 1])
    for entry in entries:
        ledger.entries[(entry.user_id, entry.seq)] = entry
    assert found(audit(ledger)) == {("ghost", "orphan_entries")}


def test_a_stream_finding_is_dropped_when_the_exact_recheck_disagrees() -> None:
    # An eventually consistent scan may miss the newest entry: the exact re-check sees it.
    ledger = FakeLedger()
    ledger.add(*chain("a", [50, -20]))
    stale_pages = [[e for e in ledger.entry_pages()[0] if e.seq == 1]]
    report = audit(ledger, stale_pages)
    assert report.findings == [] and ledger.exact_reads == ["a"]


def test_a_negative_stored_balance_is_reported() -> None:
    ledger = FakeLedger()
    account, entries = chain("a", [5])
    ledger.add(replace(account, balance=-3), entries)
    assert found(audit(ledger)) == {("a", "negative_balance"), ("a", "balance_mismatch")}


def test_unrecovered_chargebacks_are_a_notice_not_an_unhealthy_run() -> None:
    ledger = FakeLedger()
    drafts = [
        EntryDraft(type=EntryType.GRANT, amount=10, counterparty="admin"),
        EntryDraft(type=EntryType.CHARGEBACK, amount=-10, counterparty="stripe", unrecovered=15),
    ]
    account, entries = apply_drafts(Account(user_id="a"), drafts, entry_ids=["1", "2"], now=NOW)
    ledger.add(account, entries)
    report = audit(ledger)
    assert found(report) == {("a", "unrecovered_chargeback")}
    assert report.unrecovered_chargebacks == 15 and report.healthy


def test_idempotency_records_must_name_existing_entries() -> None:
    ledger = FakeLedger()
    ledger.add(*chain("a", [5]))
    reconciler = Reconciler(probe=ledger, entry_index=ledger, payments=None)
    good = IdempotencyRecord(pk="idem|ok", entry_refs=(("a", 1, "a-e0"),))
    wrong = IdempotencyRecord(pk="idem|wrong", entry_refs=(("a", 1, "other"),))
    missing = IdempotencyRecord(pk="idem|missing", entry_refs=(("a", 9, "a-e8"),))
    reconciler.check_idempotency([[good, wrong], [missing, IdempotencyRecord(pk="guard", entry_refs=())]])
    details = sorted(f.detail for f in reconciler.report.findings)
    assert len(details) == 2
    assert "idem|missing" in details[0] and "does not exist" in details[0]
    assert "idem|wrong" in details[1] and "holds entry a-e0" in details[1]


def test_purchases_and_payments_are_cross_checked() -> None:
    ledger = FakeLedger()
    drafts = [
        EntryDraft(type=EntryType.PURCHASE, amount=100, counterparty="stripe", related_id=p, metadata=m)
        for p, m in [
            ("pi_ok", {"stripe_event": "evt_ok"}),
            ("pi_lost", {"stripe_event": "evt_lost"}),
            ("pi_none", {}),
            ("pi_swapped", {"stripe_event": "evt_other"}),
        ]
    ]
    account, entries = apply_drafts(Account(user_id="b"), drafts, entry_ids=["p1", "p2", "p3", "p4"], now=NOW)
    ledger.add(account, entries)
    payments = FakePayments(
        {
            "evt_ok": StripeEventSeen(payment_id="pi_ok", outcome="credited"),
            "evt_other": StripeEventSeen(payment_id="pi_elsewhere", outcome="credited"),
        },
        purchased={"pi_ok"},
    )
    reconciler = Reconciler(probe=ledger, entry_index=ledger, payments=payments)
    reconciler.take_cut(ledger.account_pages(), lambda _account: None)
    reconciler.check_entries(ledger.entry_pages())
    reconciler.check_payments(
        [
            [
                PaymentRecord(event_id="evt_ok", outcome="credited", payment_id="pi_ok", entry_ref=("b", 1, "p1")),
                PaymentRecord(event_id="evt_gone", outcome="credited", payment_id="pi_gone", entry_ref=("b", 9, "x")),
                PaymentRecord(event_id="evt_pkg", outcome="unknown_package", payment_id="pi_pkg", user_id="c"),
                PaymentRecord(event_id="evt_dup", outcome="unknown_package", payment_id="pi_ok"),
                PaymentRecord(event_id="evt_ign", outcome="ignored"),
            ]
        ]
    )
    by_kind: dict[str, list[str]] = {}
    for finding in reconciler.report.findings:
        by_kind.setdefault(str(finding.kind), []).append(finding.detail)
    assert len(by_kind["purchase_without_payment"]) == 3
    assert any("evt_lost" in d for d in by_kind["purchase_without_payment"])
    assert any("names no Stripe event" in d for d in by_kind["purchase_without_payment"])
    assert any("pi_elsewhere" in d for d in by_kind["purchase_without_payment"])
    assert len(by_kind["payment_without_purchase"]) == 2
    assert any("pi_gone" in d for d in by_kind["payment_without_purchase"])
    assert any("pi_pkg" in d and "unknown_package" in d for d in by_kind["payment_without_purchase"])


def test_without_a_stripe_record_the_payment_check_is_skipped_and_said_so() -> None:
    ledger = FakeLedger()
    reconciler = Reconciler(probe=ledger, entry_index=ledger, payments=None)
    reconciler.check_payments(None)
    assert reconciler.report.checks_skipped == ["stripe_payments"]


# ---------------------------------------------------------------- reports and ranges
def test_partial_reports_merge_and_survive_json() -> None:
    one, two = PartialReport(), PartialReport()
    one.accounts_checked, two.accounts_checked = 2, 3
    one.totals_by_type["grant"], two.totals_by_type["grant"] = 10, 5
    one.add(Finding("a", FindingKind.SEQ_GAP, "x"))
    two.add(Finding("a", FindingKind.SEQ_GAP, "x"))  # the same account seen from two ranges
    two.add(Finding("b", FindingKind.UNRECOVERED_CHARGEBACK, "y"))
    merged = PartialReport.from_json(one.to_json())
    merged.merge(PartialReport.from_json(two.to_json()))
    assert merged.accounts_checked == 5 and merged.totals_by_type["grant"] == 15
    assert [(f.user_id, f.kind) for f in merged.findings] == [
        ("a", FindingKind.SEQ_GAP),
        ("b", FindingKind.UNRECOVERED_CHARGEBACK),
    ]
    assert not merged.healthy


def test_findings_listed_are_capped_but_all_are_counted() -> None:
    report = PartialReport()
    for n in range(FINDINGS_LISTED_MAX + 5):
        report.add(Finding(f"u{n}", FindingKind.BALANCE_MISMATCH, "d"))
    assert len(report.findings) == FINDINGS_LISTED_MAX
    assert report.findings_by_kind["balance_mismatch"] == FINDINGS_LISTED_MAX + 5


@pytest.mark.parametrize(("total", "ranges"), [(1, 1), (8, 3), (8, 8), (8, 20), (1000, 100), (7, 2)])
def test_segment_ranges_cover_every_segment_once(total: int, ranges: int) -> None:
    cut = split_segments(total, ranges)
    covered = [s for start, end in cut for s in range(start, end)]
    assert covered == list(range(total)) and all(end > start for start, end in cut)
    assert len(cut) == min(ranges, total)


def test_entry_refs_come_from_single_and_batch_bodies() -> None:
    entry = {"user_id": "a", "seq": 3, "entry_id": "e3"}
    assert entry_refs_of({"entry": entry, "balance": 5}) == (("a", 3, "e3"),)
    assert entry_refs_of({"entries": [entry, {**entry, "seq": 4, "entry_id": "e4"}]}) == (
        ("a", 3, "e3"),
        ("a", 4, "e4"),
    )
    assert entry_refs_of({"received": True}) == () and entry_refs_of(None) == ()


# ---------------------------------------------------------------- memory: bounded by accounts, not entries
def _synthetic_pages(accounts: int, entries_per_account: int, page_items: int) -> Iterator[list[Entry]]:
    """Chains generated lazily, page by page, the way a scan streams them."""
    page: list[Entry] = []
    for a in range(accounts):
        for seq in range(1, entries_per_account + 1):
            page.append(
                Entry(
                    entry_id=f"{a}-{seq}",
                    user_id=f"u{a}",
                    seq=seq,
                    type=EntryType.GRANT,
                    amount=1,
                    balance_after=seq,
                    counterparty="admin",
                    related_id=None,
                    metadata={},
                    created_at=NOW,
                )
            )
            if len(page) == page_items:
                yield page
                page = []
    if page:
        yield page


def _peak_bytes(accounts: int, entries_per_account: int) -> int:
    ledger = FakeLedger()
    cut = [Account(user_id=f"u{a}", balance=entries_per_account, version=entries_per_account) for a in range(accounts)]
    tracemalloc.start()
    try:
        reconciler = Reconciler(probe=ledger, entry_index=ledger, payments=None)
        reconciler.take_cut([cut], lambda _account: None)
        reconciler.check_entries(_synthetic_pages(accounts, entries_per_account, page_items=500))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reconciler.report.findings == [] and reconciler.report.entries_checked == accounts * entries_per_account
    return peak


def test_peak_memory_does_not_grow_with_the_number_of_entries() -> None:
    small = _peak_bytes(accounts=200, entries_per_account=10)  # 2,000 entries
    large = _peak_bytes(accounts=200, entries_per_account=200)  # 40,000 entries
    assert large < small * 1.5 + 256 * 1024, (small, large)
