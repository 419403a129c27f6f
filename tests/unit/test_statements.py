"""Balance at a moment and statements against the fake: the lagging index, the bounds, verification."""

from __future__ import annotations

import copy

import pytest

from tests.fakes import FakeRepository
from tokenledger.domain.errors import ValidationFailed
from tokenledger.domain.model import Account, EntryDraft, EntryType, apply_drafts
from tokenledger.service import statements
from tokenledger.service.ports import EntryMark
from tokenledger.service.statements import (
    StatementTooLarge,
    balance_at,
    parse_instant,
    statement,
    verify_statement,
)

T0 = "2026-11-01T00:00:00.000Z"


def seeded(amounts: list[int], user_id: str = "u") -> FakeRepository:
    repo = FakeRepository()
    drafts = [
        EntryDraft(type=EntryType.GRANT if a > 0 else EntryType.COMMITMENT, amount=a, counterparty="admin")
        for a in amounts
    ]
    # One transaction per entry a second apart: 00:00:01, 00:00:02, ...
    account = Account(user_id=user_id)
    for i, draft in enumerate(drafts, start=1):
        account, entries = apply_drafts(account, [draft], entry_ids=[f"e{i}"], now=f"2026-11-01T00:00:{i:02d}.000Z")
        repo.accounts[user_id] = account
        for entry in entries:
            repo.entries[(user_id, entry.seq)] = entry
    return repo


class LaggingIndex(FakeRepository):
    """The time index has not seen the newest `lag` entries yet (a GSI is eventually consistent)."""

    lag = 2

    def last_entry_before(self, user_id: str, bound: str, *, inclusive: bool) -> EntryMark | None:
        hidden = {e.seq for e in self.chain(user_id)[-self.lag :]}
        visible = [
            e
            for e in self.chain(user_id)
            if e.seq not in hidden and (e.created_at <= bound if inclusive else e.created_at < bound)
        ]
        if not visible:
            return None
        last = visible[-1]
        return EntryMark(last.seq, last.balance_after, last.hash, last.created_at)


def test_rfc3339_moments_normalise_to_utc_milliseconds() -> None:
    assert parse_instant("2026-11-01T01:30:00.12345+01:30", name="at") == "2026-11-01T00:00:00.123Z"
    assert parse_instant("2026-11-01t00:00:00z", name="at") == T0
    assert parse_instant("2026-11-01 00:00:00Z", name="at") == T0
    for bad in ("2026-11-01", "2026-11-01T00:00:00", "2026-02-30T00:00:00Z", "2026-11-01T24:00:00Z", "", "Z" * 41):
        with pytest.raises(ValidationFailed):
            parse_instant(bad, name="at")


def test_balance_at_costs_two_reads_and_is_exact_when_the_index_lags() -> None:
    repo = seeded([10, 5, -3, 7])
    repo.calls.clear()
    assert balance_at(repo, "u", "2026-11-01T00:00:02.500Z") == {
        "user_id": "u",
        "balance": 15,
        "version": 2,
        "at": "2026-11-01T00:00:02.500Z",
    }
    assert repo.calls == ["last_entry_before", "entries_after"]
    lagging = LaggingIndex()
    lagging.accounts, lagging.entries = repo.accounts, repo.entries
    for moment, expected in ((T0, (0, 0)), ("2026-11-01T00:00:03.000Z", (12, 3)), ("2027-01-01T00:00:00Z", (19, 4))):
        body = balance_at(lagging, "u", moment)
        assert (body["balance"], body["version"]) == expected


def test_a_statement_is_exact_when_the_index_lags_and_verifies() -> None:
    lagging = LaggingIndex()
    repo = seeded([10, 5, -3, 7])
    lagging.accounts, lagging.entries = repo.accounts, repo.entries
    body = statement(lagging, "u", "2026-11-01T00:00:04Z", "2026-11-02T00:00:00Z")
    assert [e["seq"] for e in body["entries"]] == [4]
    assert (body["opening_balance"], body["closing_balance"], body["opening_seq"]) == (12, 19, 3)
    assert body["opening_hash"] == repo.entries[("u", 3)].hash
    assert verify_statement(body) == []


def test_statement_bounds_are_enforced(monkeypatch: pytest.MonkeyPatch) -> None:
    repo = seeded([1, 1, 1, 1, 1])
    with pytest.raises(StatementTooLarge):
        statement(repo, "u", "2025-01-01T00:00:00Z", "2026-11-02T00:00:00Z")
    with pytest.raises(ValidationFailed):
        statement(repo, "u", T0, T0)
    monkeypatch.setattr(statements, "STATEMENT_ENTRIES_MAX", 4)
    with pytest.raises(StatementTooLarge):
        statement(repo, "u", T0, "2026-11-02T00:00:00Z")
    assert len(statement(repo, "u", "2026-11-01T00:00:02Z", "2026-11-02T00:00:00Z")["entries"]) == 4


def test_verify_finds_every_kind_of_edit_to_a_statement() -> None:
    repo = seeded([10, 5, -3, 7])
    body = statement(repo, "u", T0, "2026-11-02T00:00:00Z")
    assert verify_statement(body) == []

    def edited(change: str) -> list[str]:
        forged = copy.deepcopy(body)
        exec(change, {"b": forged})
        return verify_statement(forged)

    # A consistent rewrite: seq 3 took 1, not 3; every later balance carried along.
    rewrite = (
        "b['entries'][2]['amount'] = -1; b['entries'][2]['balance_after'] = 14; "
        "b['entries'][3]['balance_after'] = 21; b['closing_balance'] = 21; b['totals_by_type']['commitment'] = -1"
    )
    assert edited(rewrite)[0] == "seq 3: hash does not match its content and the previous hash"
    assert edited("b['entries'][1]['metadata'] = {'x': 'y'}") == [
        "seq 2: hash does not match its content and the previous hash"
    ]
    assert "closing_balance 1 != 19" in edited("b['closing_balance'] = 1")
    assert edited("del b['entries'][1]")[0] == "seq 3: expected seq 2"
    assert edited("b['head_hash'] = '0' * 64") == ["head_hash is not the hash of the last entry"]
    assert edited("b['entries'] = 5") == ["not a statement: entries is not a list"]
    assert edited("b['entries'][0] = 'x'") == ["entries[0] is not an entry"]
