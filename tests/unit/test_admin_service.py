"""Admin use cases against the in-memory repository: batches, reversals, balances, sign-up, settlement."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fakes import FakeRepository
from tokenledger.domain.errors import (
    AlreadyReversed,
    BatchTooLarge,
    InsufficientBalance,
    InvariantViolation,
    NotFound,
    ValidationFailed,
)
from tokenledger.domain.model import Account, EntryType
from tokenledger.service.admin import (
    BALANCES_USERS_MAX,
    BATCH_OPERATIONS_MAX,
    TRANSACTION_ACTIONS_MAX,
    AdminOperations,
    BatchOperation,
    check_welcome_grant_tokens,
    reversal_guard_pk,
)
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import Ledger
from tokenledger.service.predictions import SettlementRequest, check_plan, chunked, refunds_from_stakes

_ids = itertools.count()
_keys = itertools.count()


class Repo(FakeRepository):
    """The shared fake, plus the guard read the reversal use case needs."""

    def get_guard(self, pk: str) -> dict[str, Any] | None:
        self.calls.append("get_guard")
        return self.guards.get(pk)


def make_admin(repo: Repo | None = None) -> AdminOperations:
    ledger = Ledger(
        repo or Repo(),
        clock=lambda: "2026-11-25T12:00:00.000Z",
        new_id=lambda: f"e{next(_ids):06d}",
        sleep=lambda _s: None,
        rng=lambda: 0.5,
        epoch_s=lambda: 1_000_000.0,
    )
    return AdminOperations(ledger)


def scope(payload: object = None, key: str | None = None) -> IdempotencyScope:
    return IdempotencyScope(
        caller="admin-1",
        route="POST /v1/admin/batches",
        key=key or f"k{next(_keys)}",
        request_hash=request_hash(payload),
    )


def op(user_id: str, amount: int, kind: EntryType = EntryType.ADJUSTMENT) -> BatchOperation:
    return BatchOperation(user_id=user_id, type=kind, amount=amount)


def fund(admin: AdminOperations, user_id: str, amount: int) -> None:
    admin.batch(actor="admin-1", operations=[op(user_id, amount, EntryType.GRANT)], reason="funds", scope=scope())


def repo_of(admin: AdminOperations) -> Repo:
    repo = admin.ledger.repo
    assert isinstance(repo, Repo)
    return repo


# ---------------------------------------------------------------------- batches
def test_batch_limit_formula() -> None:
    # N entries + U account updates + 1 idempotency record, worst case U = N.
    n = BATCH_OPERATIONS_MAX
    assert n + n + 1 <= TRANSACTION_ACTIONS_MAX and (n + 1) * 2 + 1 > TRANSACTION_ACTIONS_MAX


def test_a_batch_is_one_read_and_one_transaction_with_operations_folded_per_user() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    result = admin.batch(
        actor="admin-1",
        operations=[op("a", 5, EntryType.GRANT), op("b", 7, EntryType.GRANT), op("a", -3)],
        reason="mixed",
        scope=scope(),
    )
    assert repo.calls == ["get_accounts", "commit"]
    assert [(e["user_id"], e["seq"], e["amount"]) for e in result.body["entries"]] == [
        ("a", 1, 5),
        ("b", 1, 7),
        ("a", 2, -3),
    ]
    assert result.body["balances"] == {"a": 2, "b": 7}
    for user_id in ("a", "b"):
        repo.assert_consistent(user_id)


def test_a_failing_operation_names_its_index_and_moves_nothing() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    fund(admin, "b", 4)
    before = dict(repo.accounts)
    with pytest.raises(InsufficientBalance) as refused:
        admin.batch(
            actor="admin-1",
            operations=[op("a", 10, EntryType.GRANT), op("b", -3), op("b", -2)],
            reason="r",
            scope=scope(),
        )
    assert refused.value.extra["index"] == 2 and refused.value.extra["user_id"] == "b"
    assert (refused.value.balance, refused.value.shortfall) == (1, 1)
    assert repo.accounts == before and "a" not in repo.accounts


def test_over_the_limit_is_batch_too_large() -> None:
    admin = make_admin()
    with pytest.raises(BatchTooLarge):
        admin.batch(
            actor="admin-1",
            operations=[op(f"u{i}", 1, EntryType.GRANT) for i in range(BATCH_OPERATIONS_MAX + 1)],
            reason="r",
            scope=scope(),
        )
    assert repo_of(admin).calls == []
    with pytest.raises(InvariantViolation):
        admin.write_operations([], actor="admin-1", reason="r", scope=scope())


def test_an_answer_too_large_to_store_is_refused_before_any_write() -> None:
    admin = make_admin()
    metadata = {f"k{i}": "x" * 500 for i in range(20)}
    operations = [
        BatchOperation(user_id=f"u{i}", type=EntryType.GRANT, amount=1, metadata=metadata)
        for i in range(BATCH_OPERATIONS_MAX)
    ]
    with pytest.raises(BatchTooLarge):
        admin.batch(actor="admin-1", operations=operations, reason="r", scope=scope())
    assert "commit" not in repo_of(admin).calls


@settings(max_examples=150, deadline=None)
@given(
    start=st.dictionaries(st.sampled_from("abc"), st.integers(0, 20), max_size=3),
    amounts=st.lists(st.tuples(st.sampled_from("abc"), st.integers(-15, 15).filter(bool)), min_size=1, max_size=12),
)
def test_a_batch_applies_all_or_nothing_and_names_the_first_overdraft(
    start: dict[str, int], amounts: list[tuple[str, int]]
) -> None:
    admin = make_admin()
    repo = repo_of(admin)
    for user_id, balance in start.items():
        if balance:
            fund(admin, user_id, balance)
    running = {u: start.get(u, 0) for u in "abc"}
    first_failure = None
    for index, (user_id, amount) in enumerate(amounts):
        running[user_id] += amount
        if running[user_id] < 0 and first_failure is None:
            first_failure = index
    # A user's later operations only matter up to its own first failure; the answer is the
    # smallest index that fails given the operations before it on the same user.
    balances_before = {u: repo.accounts[u].balance if u in repo.accounts else 0 for u in "abc"}
    try:
        result = admin.batch(
            actor="admin-1", operations=[op(u, a) for u, a in amounts], reason="property", scope=scope()
        )
    except InsufficientBalance as refused:
        assert first_failure is not None
        assert refused.extra["index"] == first_failure
        assert {u: repo.accounts[u].balance if u in repo.accounts else 0 for u in "abc"} == balances_before
    else:
        assert first_failure is None
        assert result.body["balances"] == {u: running[u] for u in dict.fromkeys(u for u, _ in amounts)}
    for user_id in "abc":
        repo.assert_consistent(user_id)


def test_a_batch_retries_on_a_moved_account_and_replays_on_its_key() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    fund(admin, "a", 10)

    def concurrent_debit() -> None:
        make_admin(repo).batch(actor="other", operations=[op("a", -4)], reason="race", scope=scope())

    repo.before_commit = concurrent_debit
    first = admin.batch(
        actor="admin-1", operations=[op("a", -5), op("b", 2, EntryType.GRANT)], reason="r", scope=scope(key="K")
    )
    assert first.body["balances"] == {"a": 1, "b": 2}
    again = admin.batch(
        actor="admin-1", operations=[op("a", -5), op("b", 2, EntryType.GRANT)], reason="r", scope=scope(key="K")
    )
    assert again.replayed and again.body == first.body
    repo.assert_consistent("a")


# ---------------------------------------------------------------------- reversals
def test_a_reversal_compensates_once() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    fund(admin, "a", 30)
    original = repo.chain("a")[0]
    result = admin.reverse(actor="admin-2", entry_id=original.entry_id, reason="mistake", scope=scope())
    entry = result.body["entry"]
    assert (entry["type"], entry["amount"], entry["reverses"], entry["actor"]) == (
        "reversal",
        -30,
        original.entry_id,
        "admin-2",
    )
    assert reversal_guard_pk(original.entry_id) in repo.guards
    with pytest.raises(AlreadyReversed):
        admin.reverse(actor="admin-2", entry_id=original.entry_id, reason="again", scope=scope())
    repo.assert_consistent("a")
    assert repo.accounts["a"].balance == 0


def test_a_reversal_racing_another_is_already_reversed() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    fund(admin, "a", 30)
    fund(admin, "a", 30)
    original = repo.chain("a")[0]

    def other_reversal() -> None:
        make_admin(repo).reverse(actor="admin-3", entry_id=original.entry_id, reason="first", scope=scope())

    repo.before_commit = other_reversal
    with pytest.raises(AlreadyReversed):
        admin.reverse(actor="admin-2", entry_id=original.entry_id, reason="second", scope=scope())
    assert [e.type for e in repo.chain("a")].count(EntryType.REVERSAL) == 1
    repo.assert_consistent("a")


def test_reversing_spent_credit_is_insufficient_balance_and_marks_nothing() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    fund(admin, "a", 30)
    original = repo.chain("a")[0]
    admin.batch(actor="admin-1", operations=[op("a", -20)], reason="spend", scope=scope())
    with pytest.raises(InsufficientBalance) as refused:
        admin.reverse(actor="admin-2", entry_id=original.entry_id, reason="fraud", scope=scope())
    assert (refused.value.balance, refused.value.shortfall) == (10, 20)
    assert repo.guards == {}


def test_reversing_an_unknown_entry_is_not_found() -> None:
    with pytest.raises(NotFound):
        make_admin().reverse(actor="admin-2", entry_id="nope", reason="r", scope=scope())


# ---------------------------------------------------------------------- balances
def test_balances_read_once_and_count_unknown_users_as_zero() -> None:
    admin = make_admin()
    fund(admin, "a", 12)
    repo = repo_of(admin)
    repo.calls.clear()
    assert admin.balances(["ghost", "a", "a"]) == {
        "balances": [{"user_id": "ghost", "balance": 0, "version": 0}, {"user_id": "a", "balance": 12, "version": 1}],
        "total": 12,
    }
    assert repo.calls == ["get_accounts"]
    with pytest.raises(ValidationFailed):
        admin.balances([f"u{i}" for i in range(BALANCES_USERS_MAX + 1)])
    with pytest.raises(ValidationFailed):
        admin.balances([])


# ---------------------------------------------------------------------- sign-up
def test_opening_an_account_without_a_grant_writes_no_entry_and_is_idempotent() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    admin.open_account("new", welcome_grant_tokens=0)
    admin.open_account("new", welcome_grant_tokens=0)
    assert repo.accounts["new"] == Account(
        user_id="new",
        balance=0,
        version=0,
        created_at="2026-11-25T12:00:00.000Z",
        updated_at="2026-11-25T12:00:00.000Z",
    )
    assert repo.entries == {}


def test_the_welcome_grant_is_written_once() -> None:
    admin = make_admin()
    repo = repo_of(admin)
    for tokens in (25, 25, 40):
        admin.open_account("new", welcome_grant_tokens=tokens)
    assert [(e.type, e.amount, e.actor) for e in repo.chain("new")] == [
        (EntryType.GRANT, 25, "system:post-confirmation")
    ]
    repo.assert_consistent("new")


def test_an_account_that_already_moved_is_left_alone() -> None:
    admin = make_admin()
    fund(admin, "a", 3)
    admin.open_account("a", welcome_grant_tokens=0)
    assert repo_of(admin).accounts["a"].balance == 3


@pytest.mark.parametrize("raw", ["-1", "1.5", "ten", "1000000001", ""])
def test_a_bad_welcome_grant_setting_fails_the_cold_start(raw: str) -> None:
    with pytest.raises(InvariantViolation):
        check_welcome_grant_tokens(raw)


def test_welcome_grant_settings_parse() -> None:
    assert [check_welcome_grant_tokens(r) for r in ("0", " 25 ", "1000000000")] == [0, 25, 1_000_000_000]


# ---------------------------------------------------------------------- settlement plans
def test_a_settlement_plan_is_checked_whole_before_anything_is_written() -> None:
    good = SettlementRequest(outcome="resolved", reason="r", payouts=[("u-1", 5), ("u-2", 7)])
    check_plan(good)
    bad = [
        SettlementRequest(outcome="resolved", reason="r", payouts=[("u-1", 5), ("u-1", 7)]),
        SettlementRequest(outcome="resolved", reason="r", payouts=[("u-1", 0)]),
        SettlementRequest(outcome="resolved", reason="r", payouts=[]),
        SettlementRequest(outcome="cancelled", reason="r", payouts=[("u-1", 5)]),
        SettlementRequest(outcome="cancelled", reason="r", house_contribution=5),
        SettlementRequest(outcome="won", reason="r", payouts=[("u-1", 5)]),
    ]
    for request in bad:
        with pytest.raises(ValidationFailed):
            check_plan(request)


def test_refunds_are_each_users_net_stake_and_chunks_fit_one_transaction() -> None:
    stakes = [("u-b", 10), ("u-a", 5), ("u-b", -10), ("u-a", 7), ("u-c", 1)]
    assert refunds_from_stakes(stakes) == [("u-a", 12), ("u-c", 1)]
    with pytest.raises(InvariantViolation):
        refunds_from_stakes([("u-a", -1)])
    chunks = chunked([(f"u-{i}", 1) for i in range(100)])
    assert [len(c) for c in chunks] == [BATCH_OPERATIONS_MAX, BATCH_OPERATIONS_MAX, 2]
    assert 2 * BATCH_OPERATIONS_MAX + 1 <= TRANSACTION_ACTIONS_MAX
