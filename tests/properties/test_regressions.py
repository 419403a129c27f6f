"""Bugs the property tests and the chaos workload found, each pinned by a test named after it."""

from __future__ import annotations

import itertools

import pytest

from tests.fakes import FakeRepository
from tokenledger.adapters.ids import utc_now_iso
from tokenledger.domain.errors import InsufficientBalance, VersionConflict
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import Ledger

_ids = itertools.count()


def _ledger(repo: FakeRepository) -> Ledger:
    return Ledger(repo, clock=utc_now_iso, new_id=lambda: f"r{next(_ids)}", sleep=lambda _s: None, rng=lambda: 0.5)


def _grant(ledger: Ledger, user: str, amount: int, key: str) -> None:
    ledger.admin_entry(
        actor="admin-1",
        user_id=user,
        entry_type="grant",
        amount=amount,
        reason="regression",
        related_id=None,
        metadata={},
        scope=IdempotencyScope("admin-1", "admin", key, request_hash([user, amount, key])),
    )


def _commit(ledger: Ledger, user: str, amount: int, key: str, if_match: int) -> object:
    return ledger.commit(
        user_id=user,
        prediction_id="p1",
        amount=amount,
        metadata={},
        scope=IdempotencyScope(user, "commit", key, request_hash([amount])),
        if_match=if_match,
    )


@pytest.mark.parametrize("stale_version", [0, 1])
def test_regression_if_match_on_an_old_cached_version_is_412_not_a_stale_insufficient_balance(
    stale_version: int,
) -> None:
    """Found by the state machine: If-Match on an old version the cache knew (or 0) skipped the read,
    judged the commitment against that old balance and answered 409 insufficient_balance with a
    balance the account no longer had. The account is richer and has moved on: the answer is 412.
    """
    repo = FakeRepository()
    ledger = _ledger(repo)
    _grant(ledger, "alice", 1, "g1")  # version 1, balance 1: cached
    _grant(ledger, "alice", 200, "g2")  # version 2, balance 201
    with pytest.raises(VersionConflict) as refused:
        _commit(ledger, "alice", 70, "c1", if_match=stale_version)
    assert refused.value.extra["current_version"] == 2
    repo.assert_consistent("alice")
    assert repo.accounts["alice"].balance == 201


def test_regression_if_match_on_the_current_cached_version_still_refuses_a_real_shortfall() -> None:
    repo = FakeRepository()
    ledger = _ledger(repo)
    _grant(ledger, "alice", 5, "g1")
    with pytest.raises(InsufficientBalance) as refused:
        _commit(ledger, "alice", 70, "c1", if_match=1)
    assert (refused.value.balance, refused.value.shortfall) == (5, 65)
    repo.assert_consistent("alice")
