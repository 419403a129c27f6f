"""The write path against an in-memory repository: retries, replays, refusals, round trips."""

from __future__ import annotations

import itertools

import pytest

from tests.fakes import FakeRepository
from tokenledger.domain.errors import (
    ContentionExhausted,
    IdempotencyKeyReused,
    InsufficientBalance,
    NotFound,
    ValidationFailed,
    VersionConflict,
)
from tokenledger.domain.model import Account, EntryDraft, EntryType, apply_drafts
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import WRITE_ATTEMPTS_MAX, Ledger

_ids = itertools.count()


def make_ledger(repo: FakeRepository, sleeps: list[float] | None = None) -> Ledger:
    return Ledger(
        repo,
        clock=lambda: "2026-11-25T12:00:00.000Z",
        new_id=lambda: f"e{next(_ids)}",
        sleep=(sleeps.append if sleeps is not None else lambda _s: None),
        rng=lambda: 0.5,
        epoch_s=lambda: 1_000_000.0,
    )


def scope(key: str, payload: object = None, caller: str = "u1") -> IdempotencyScope:
    return IdempotencyScope(caller=caller, route="POST /v1/commitments", key=key, request_hash=request_hash(payload))


def grant(ledger: Ledger, user: str, amount: int, key: str) -> None:
    ledger.admin_entry(
        actor="admin-1",
        user_id=user,
        entry_type="grant",
        amount=amount,
        reason="test",
        related_id=None,
        metadata={},
        scope=IdempotencyScope("admin-1", "admin", key, request_hash([user, amount])),
    )


def commit(ledger: Ledger, amount: int, key: str, **kwargs: object) -> object:
    return ledger.commit(
        user_id="u1", prediction_id="p1", amount=amount, metadata={}, scope=scope(key, amount), **kwargs
    )


def test_a_commitment_costs_one_read_and_one_transaction() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    repo.calls.clear()
    result = commit(ledger, 30, "c1")
    assert repo.calls == ["get_account", "commit"]
    assert not result.replayed and result.body["balance"] == 70
    assert result.body["entry"]["type"] == "commitment" and result.body["entry"]["amount"] == -30
    repo.assert_consistent("u1")


def test_if_match_on_a_known_version_skips_the_read() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    repo.calls.clear()
    result = commit(ledger, 30, "c1", if_match=1)
    assert repo.calls == ["commit"]
    assert result.body["entry"]["seq"] == 2
    repo.assert_consistent("u1")


def test_if_match_on_an_old_version_is_412_and_moves_nothing() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    commit(ledger, 10, "c1")
    with pytest.raises(VersionConflict):
        commit(ledger, 10, "c2", if_match=1)
    assert repo.accounts["u1"].balance == 90
    repo.assert_consistent("u1")


def test_a_replay_returns_the_first_answer_and_writes_nothing() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    first = commit(ledger, 30, "c1")
    entries_before = dict(repo.entries)
    again = commit(ledger, 30, "c1")
    assert again.replayed and again.body == first.body
    assert repo.entries == entries_before
    assert repo.accounts["u1"].balance == 70


def test_a_replay_is_recognised_even_when_the_balance_is_now_short() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    first = commit(ledger, 100, "c1")
    again = commit(ledger, 100, "c1")
    assert again.replayed and again.body == first.body


def test_the_same_key_with_another_body_is_refused() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    commit(ledger, 30, "c1")
    with pytest.raises(IdempotencyKeyReused):
        commit(ledger, 31, "c1")
    assert repo.accounts["u1"].balance == 70


def test_insufficient_balance_names_balance_and_shortfall() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 10, "g1")
    with pytest.raises(InsufficientBalance) as refused:
        commit(ledger, 25, "c1")
    assert (refused.value.balance, refused.value.shortfall) == (10, 15)
    repo.assert_consistent("u1")


def test_a_concurrent_writer_costs_a_retry_from_the_fresh_state_not_a_lost_update() -> None:
    repo = FakeRepository()
    sleeps: list[float] = []
    ledger = make_ledger(repo, sleeps)
    grant(ledger, "u1", 100, "g1")
    other = make_ledger(repo)
    repo.before_commit = lambda: commit(other, 40, "other")
    result = commit(ledger, 50, "c1")
    assert result.body["balance"] == 10
    assert ledger.last_write_attempts == 2 and len(sleeps) == 1
    repo.assert_consistent("u1")


def test_retries_are_bounded_and_end_in_a_contention_error() -> None:
    repo = FakeRepository()
    sleeps: list[float] = []
    ledger = make_ledger(repo, sleeps)
    grant(ledger, "u1", 1000, "g1")
    original_commit = repo.commit
    counter = itertools.count()

    def always_moved(*args: object, **kwargs: object) -> None:
        # Another writer lands a grant just before each of our transactions.
        bump = EntryDraft(EntryType.GRANT, 1, "admin")
        after, entries = apply_drafts(repo.accounts["u1"], [bump], entry_ids=[f"b{next(counter)}"], now="t")
        repo.accounts["u1"] = after
        repo.entries[("u1", after.version)] = entries[0]
        original_commit(*args, **kwargs)  # type: ignore[arg-type]

    repo.commit = always_moved  # type: ignore[method-assign]
    with pytest.raises(ContentionExhausted):
        commit(ledger, 5, "c1")
    assert ledger.last_write_attempts == WRITE_ATTEMPTS_MAX
    assert len(sleeps) == WRITE_ATTEMPTS_MAX - 1
    assert all(0 <= s <= 0.2 for s in sleeps)


def test_history_pages_newest_first_with_a_cursor_bound_to_the_caller() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    for i in range(4):
        commit(ledger, 1, f"c{i}")
    page = ledger.history("u1", limit=3)
    assert [e["seq"] for e in page["items"]] == [5, 4, 3]
    rest = ledger.history("u1", limit=3, cursor=page["next_cursor"])
    assert [e["seq"] for e in rest["items"]] == [2, 1] and rest["next_cursor"] is None
    with pytest.raises(ValidationFailed):
        ledger.history("u2", limit=3, cursor=page["next_cursor"])
    with pytest.raises(ValidationFailed):
        ledger.history("u1", limit=3, cursor=page["next_cursor"], entry_type="grant")


def test_an_entry_of_another_user_is_not_found() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    entry_id = repo.chain("u1")[0].entry_id
    assert ledger.entry("u1", entry_id)["entry_id"] == entry_id
    with pytest.raises(NotFound):
        ledger.entry("u2", entry_id)


def test_balance_with_required_reports_sufficiency_and_shortfall() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 40, "g1")
    assert ledger.balance("u1", required=50) | {} == {
        "user_id": "u1",
        "balance": 40,
        "version": 1,
        "updated_at": "2026-11-25T12:00:00.000Z",
        "sufficient": False,
        "shortfall": 10,
    }
    assert ledger.balance("nobody") == {"user_id": "nobody", "balance": 0, "version": 0, "updated_at": None}


def test_a_stale_cache_entry_costs_a_retry_never_a_wrong_entry() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    grant(ledger, "u1", 100, "g1")
    # Poison the cache: claim version 1 had balance 999 (e.g. an account item that drifted).
    ledger.versions.remember(Account(user_id="u1", balance=999, version=1, created_at="x"))
    result = commit(ledger, 10, "c1", if_match=1)
    assert result.body["balance"] == 90
    repo.assert_consistent("u1")


def test_a_multi_user_plan_folds_each_users_drafts_into_one_account_write() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    drafts = {
        "a": [EntryDraft(EntryType.GRANT, 5, "admin"), EntryDraft(EntryType.GRANT, 7, "admin")],
        "b": [EntryDraft(EntryType.GRANT, 3, "admin")],
    }
    result = ledger.write(
        lambda _accounts: drafts,
        users=["a", "b"],
        scope=IdempotencyScope("admin", "batch", "k", request_hash("x")),
        body=lambda entries, after: {"n": len(entries), "balances": {u: a.balance for u, a in after.items()}},
    )
    assert result.body == {"n": 3, "balances": {"a": 12, "b": 3}}
    repo.assert_consistent("a")
    repo.assert_consistent("b")


def test_a_write_of_no_account_records_its_answer_and_retries_a_conflict() -> None:
    """A settlement's answer (no entry, no account) goes through the write path too: a conflict is retried."""
    from tokenledger.service.ports import TransactionRefused

    repo = FakeRepository()
    conflicts = iter([True])

    def conflict_once() -> None:
        if next(conflicts, False):
            raise TransactionRefused(conflict=True)

    repo.before_commit = conflict_once
    sleeps: list[float] = []
    ledger = make_ledger(repo, sleeps)
    first = ledger.write(lambda _a: {}, users=[], scope=scope("k1"), body=lambda _e, _a: {"done": True})
    assert (first.body, first.replayed) == ({"done": True}, False)
    assert repo.calls.count("commit") == 2 and len(sleeps) == 1, "refused once by a conflict, then written"
    again = ledger.write(lambda _a: {}, users=[], scope=scope("k1"), body=lambda _e, _a: {"other": 1})
    assert (again.body, again.replayed) == ({"done": True}, True)
    assert repo.accounts == {} and repo.entries == {}


def test_an_account_is_opened_once_without_an_entry_and_a_moved_one_is_left_alone() -> None:
    repo = FakeRepository()
    ledger = make_ledger(repo)
    new = {"u1": Account(user_id="u1")}
    ledger.write(lambda _a: {"u1": []}, users=["u1"], scope=None, body=lambda _e, _a: {}, accounts_read=new)
    assert repo.accounts["u1"] == Account(
        user_id="u1", created_at="2026-11-25T12:00:00.000Z", updated_at="2026-11-25T12:00:00.000Z"
    )
    grant(ledger, "u1", 5, "g1")
    commits = repo.calls.count("commit")
    ledger.write(lambda _a: {"u1": []}, users=["u1"], scope=None, body=lambda _e, _a: {}, accounts_read=new)
    assert repo.calls.count("commit") == commits + 1, "one refused transaction, nothing written after it"
    assert (repo.accounts["u1"].balance, repo.accounts["u1"].version) == (5, 1)
    assert repo.entries and all(e.user_id == "u1" for e in repo.entries.values())
