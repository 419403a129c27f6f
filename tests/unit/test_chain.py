"""The hash chain: the canonical encoding (pinned byte for byte), the write path, the checks."""

from __future__ import annotations

import hashlib
from dataclasses import replace

from tests.fakes import FakeRepository
from tokenledger.adapters.ids import new_ulid
from tokenledger.domain.chain import GENESIS_HASH, canonical, entry_hash, first_bad_seq
from tokenledger.domain.model import Account, Entry, EntryDraft, EntryType, apply_drafts, next_created_at
from tokenledger.service.idempotency import IdempotencyScope
from tokenledger.service.ledger import Ledger
from tokenledger.service.reconcile.chain import ChainCheck
from tokenledger.service.reconcile.findings import FindingKind

NOW = "2026-11-24T12:00:00.123Z"
SAMPLE = Entry(
    entry_id="01JDQ3V6Z8Y2N4K7M9P1R3T5W7",
    user_id="u-123",
    seq=7,
    type=EntryType.COMMITMENT,
    amount=-50,
    balance_after=150,
    counterparty="prediction:p-9",
    related_id="p-9",
    metadata={"side": "yes", "note": "café"},
    created_at=NOW,
)


def test_the_canonical_encoding_is_pinned_byte_for_byte() -> None:
    # The example of docs/reconciliation.md: change one byte here and every stored chain breaks.
    expected = (
        "tokenledger.entry.v1\n"
        "64:" + "0" * 64 + "26:01JDQ3V6Z8Y2N4K7M9P1R3T5W7" + "5:u-123" + "1:7" + "10:commitment"
        "3:-50" + "3:150" + "14:prediction:p-9" + "3:p-9" + "24:2026-11-24T12:00:00.123Z"
        "~~~~" + "1:2" + "4:note" + "5:café" + "4:side" + "3:yes"
    ).encode()
    fields = {k: getattr(SAMPLE, k) for k in ("entry_id", "user_id", "seq", "type", "amount", "balance_after")}
    got = canonical(
        prev_hash=GENESIS_HASH,
        **fields,
        counterparty=SAMPLE.counterparty,
        related_id=SAMPLE.related_id,
        created_at=SAMPLE.created_at,
        reverses=None,
        reason=None,
        actor=None,
        unrecovered=None,
        metadata=SAMPLE.metadata,
    )
    assert got == expected
    assert entry_hash(SAMPLE, GENESIS_HASH) == hashlib.sha256(expected).hexdigest()
    assert entry_hash(SAMPLE, GENESIS_HASH) == "8f80628d5d88e6b2a4724e7850f2675f87726ca69899acd307435af98b9df904"


def test_every_field_a_reader_relies_on_changes_the_hash() -> None:
    base = entry_hash(SAMPLE, GENESIS_HASH)
    changed = [
        replace(SAMPLE, amount=-51),
        replace(SAMPLE, balance_after=149),
        replace(SAMPLE, type=EntryType.ADJUSTMENT),
        replace(SAMPLE, counterparty="prediction:p-8"),
        replace(SAMPLE, related_id=None),
        replace(SAMPLE, related_id=""),
        replace(SAMPLE, metadata={"side": "no", "note": "café"}),
        replace(SAMPLE, metadata={"sidenote": "café", "": "yes"}),
        replace(SAMPLE, created_at="2026-11-24T12:00:00.124Z"),
        replace(SAMPLE, reverses="01X"),
        replace(SAMPLE, reason="r"),
        replace(SAMPLE, actor="a"),
        replace(SAMPLE, unrecovered=0),
        replace(SAMPLE, seq=8),
        replace(SAMPLE, user_id="u-124"),
        replace(SAMPLE, entry_id="01JDQ3V6Z8Y2N4K7M9P1R3T5W8"),
    ]
    hashes = {entry_hash(e, GENESIS_HASH) for e in changed}
    assert base not in hashes and len(hashes) == len(changed)
    assert entry_hash(SAMPLE, "f" * 64) != base


def draft(amount: int, **extra: object) -> EntryDraft:
    kind = EntryType.GRANT if amount > 0 else EntryType.COMMITMENT
    return EntryDraft(type=kind, amount=amount, counterparty="admin", **extra)  # type: ignore[arg-type]


def test_apply_drafts_chains_each_entry_on_the_one_before_and_the_account_carries_the_head() -> None:
    after, entries = apply_drafts(Account(user_id="u"), [draft(10), draft(-3)], entry_ids=["a", "b"], now=NOW)
    assert entries[0].hash == entry_hash(entries[0], GENESIS_HASH)
    assert entries[1].hash == entry_hash(entries[1], entries[0].hash or "")
    assert after.head_hash == entries[1].hash
    later, more = apply_drafts(after, [draft(5, metadata={"k": "ü"})], entry_ids=["c"], now=NOW)
    assert more[0].hash == entry_hash(more[0], entries[1].hash or "") == later.head_hash
    assert first_bad_seq([*entries, *more]) is None


def test_created_at_strictly_increases_per_user_even_when_the_clock_does_not() -> None:
    after, entries = apply_drafts(Account(user_id="u"), [draft(1), draft(1), draft(1)], entry_ids=list("abc"), now=NOW)
    assert [e.created_at for e in entries] == [NOW, "2026-11-24T12:00:00.124Z", "2026-11-24T12:00:00.125Z"]
    assert after.updated_at == entries[-1].created_at
    # A writer whose clock runs behind still writes after the last entry.
    _, behind = apply_drafts(after, [draft(1)], entry_ids=["d"], now="2026-11-24T11:59:59.000Z")
    assert behind[0].created_at == "2026-11-24T12:00:00.126Z"
    assert next_created_at("2026-11-24T12:00:01.000Z", NOW) == "2026-11-24T12:00:01.000Z"


def fed(entries: list[Entry], account: Account) -> ChainCheck:
    check = ChainCheck(
        user_id=account.user_id, balance=account.balance, version=account.version, head_hash=account.head_hash
    )
    for entry in entries:
        check.feed(entry)
    check.finish()
    return check


def test_a_rewrite_that_keeps_every_sum_agreeing_is_caught_at_its_seq() -> None:
    account, entries = apply_drafts(
        Account(user_id="u"), [draft(100), draft(-30), draft(20)], entry_ids=list("abc"), now=NOW
    )
    assert fed(entries, account).findings is None
    # Seq 2 debited 10 instead of 30: balance_after of 2 and 3 and the account carried along.
    forged = [entries[0], replace(entries[1], amount=-10, balance_after=90), replace(entries[2], balance_after=110)]
    check = fed(forged, replace(account, balance=110))
    assert check.findings == [(FindingKind.HASH_MISMATCH, "seq 2: stored hash does not match its content or chain")]
    assert first_bad_seq(forged) == 2


def test_entries_from_before_the_chain_may_only_come_first() -> None:
    account, entries = apply_drafts(Account(user_id="u"), [draft(10), draft(5)], entry_ids=["a", "b"], now=NOW)
    legacy = [replace(e, hash=None) for e in entries]
    legacy_account = replace(account, head_hash=None)
    check = fed(legacy, legacy_account)
    assert check.findings is None and check.unhashed == 2
    # The first write after them chains on genesis, and the whole account verifies.
    after, more = apply_drafts(legacy_account, [draft(1)], entry_ids=["c"], now=NOW)
    assert more[0].hash == entry_hash(more[0], GENESIS_HASH)
    assert fed([*legacy, *more], after).findings is None
    # A hash stripped from an entry after a hashed one is reported.
    stripped = [entries[0], replace(entries[1], hash=None)]
    assert (
        fed(stripped, account).findings
        == [
            (FindingKind.HASH_MISMATCH, "seq 2: no hash after hashed entries"),
            (FindingKind.HASH_MISMATCH, "the account's head hash is not the hash of seq 2"),
        ][:1]
    )


def test_the_if_match_write_stays_one_round_trip_and_chains() -> None:
    repo = FakeRepository()
    ledger = Ledger(repo, clock=lambda: NOW, new_id=new_ulid)

    def scope(key: str) -> IdempotencyScope:
        return IdempotencyScope(caller="u", route="test", key=key, request_hash=key)

    ledger.admin_entry(
        actor="ops",
        user_id="u",
        entry_type="grant",
        amount=50,
        reason="r",
        related_id=None,
        metadata={},
        scope=scope("k1"),
    )
    repo.calls.clear()
    done = ledger.commit(user_id="u", prediction_id="p", amount=5, metadata={}, scope=scope("k2"), if_match=1)
    assert repo.calls == ["commit"]
    chain = repo.chain("u")
    assert done.body["entry"]["hash"] == chain[1].hash == repo.accounts["u"].head_hash
    assert first_bad_seq(chain) is None
