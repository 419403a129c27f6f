"""The pure rules: how drafts become entries, and what is refused."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tokenledger.domain.errors import InsufficientBalance, InvariantViolation, ValidationFailed
from tokenledger.domain.model import AMOUNT_MAX, Account, EntryDraft, EntryType, apply_drafts, check_amount

NOW = "2026-11-25T12:00:00.000Z"


def draft(amount: int, kind: EntryType = EntryType.ADJUSTMENT) -> EntryDraft:
    return EntryDraft(type=kind, amount=amount, counterparty="admin")


def test_drafts_become_consecutive_entries_with_running_balance() -> None:
    account = Account(user_id="u1", balance=10, version=3, created_at=NOW)
    after, entries = apply_drafts(account, [draft(5), draft(-12)], entry_ids=["a", "b"], now=NOW)
    assert [e.seq for e in entries] == [4, 5]
    assert [e.balance_after for e in entries] == [15, 3]
    assert (after.balance, after.version) == (3, 5)


def test_a_debit_beyond_the_balance_is_refused_with_the_shortfall() -> None:
    account = Account(user_id="u1", balance=10, version=1, created_at=NOW)
    with pytest.raises(InsufficientBalance) as refused:
        apply_drafts(account, [draft(-25, EntryType.COMMITMENT)], entry_ids=["a"], now=NOW)
    assert (refused.value.balance, refused.value.shortfall) == (10, 15)


def test_a_later_draft_that_overdraws_refuses_the_whole_plan() -> None:
    account = Account(user_id="u1", balance=10, version=1, created_at=NOW)
    with pytest.raises(InsufficientBalance):
        apply_drafts(account, [draft(-5), draft(-6)], entry_ids=["a", "b"], now=NOW)


@pytest.mark.parametrize(
    ("kind", "amount"),
    [(EntryType.COMMITMENT, 5), (EntryType.GRANT, -5), (EntryType.PURCHASE, 0), (EntryType.CHARGEBACK, 3)],
)
def test_an_amount_with_the_wrong_sign_for_its_type_is_a_bug(kind: EntryType, amount: int) -> None:
    with pytest.raises(InvariantViolation):
        apply_drafts(Account(user_id="u1", balance=100), [draft(amount, kind)], entry_ids=["a"], now=NOW)


@pytest.mark.parametrize("bad", [True, 1.0, "10", None, 0, -1, AMOUNT_MAX + 1, float("nan")])
def test_check_amount_rejects_everything_but_an_int_in_range(bad: object) -> None:
    with pytest.raises(ValidationFailed):
        check_amount(bad)


def test_check_amount_accepts_signed_amounts_only_when_asked() -> None:
    assert check_amount(-5, signed=True) == -5
    with pytest.raises(ValidationFailed):
        check_amount(-5)


@given(st.lists(st.integers(min_value=-1000, max_value=1000).filter(bool), max_size=30))
def test_any_accepted_sequence_keeps_the_chain_and_never_goes_negative(amounts: list[int]) -> None:
    account = Account(user_id="u1")
    chain = []
    for i, amount in enumerate(amounts):
        try:
            account, entries = apply_drafts(account, [draft(amount)], entry_ids=[str(i)], now=NOW)
        except InsufficientBalance:
            continue
        chain.extend(entries)
    running = 0
    for seq, entry in enumerate(chain, start=1):
        running += entry.amount
        assert (entry.seq, entry.balance_after) == (seq, running)
        assert entry.balance_after >= 0
    assert (account.balance, account.version) == (running, len(chain))
