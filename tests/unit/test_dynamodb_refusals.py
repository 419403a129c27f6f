"""How the DynamoDB adapter reads a cancelled transaction, reason by reason."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from tokenledger.adapters.dynamodb import DynamoLedgerRepository
from tokenledger.domain.model import Account, Entry, EntryType
from tokenledger.service.ports import AccountWrite, IdempotencyClaim, StoredResponse, TransactionRefused

BEFORE = Account(user_id="u1", balance=10, version=1, created_at="t")
AFTER = Account(user_id="u1", balance=5, version=2, created_at="t", updated_at="t")
ENTRY = Entry("e2", "u1", 2, EntryType.COMMITMENT, -5, 5, "prediction:p", "p", {}, "t")


class CancellingClient:
    def __init__(self, reasons: list[dict[str, Any]]) -> None:
        self.reasons = reasons

    def transact_write_items(self, **_: Any) -> None:
        response = {
            "Error": {"Code": "TransactionCanceledException", "Message": "x"},
            "CancellationReasons": self.reasons,
        }
        raise ClientError(response, "TransactWriteItems")  # type: ignore[arg-type]


def commit_with(reasons: list[dict[str, Any]]) -> None:
    repo = DynamoLedgerRepository(
        CancellingClient(reasons), accounts_table="acc", entries_table="ent", idempotency_table="idem"
    )
    repo.commit([AccountWrite(before=BEFORE, after=AFTER, entries=[ENTRY])], idempotency=None)


@pytest.mark.parametrize("code", ["TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"])
def test_conflicts_and_throttled_items_are_retried_from_the_same_state(code: str) -> None:
    with pytest.raises(TransactionRefused) as refused:
        commit_with([{"Code": code}, {"Code": "None"}])
    assert refused.value.stale == {"u1": BEFORE}
    assert refused.value.replay is None and not refused.value.guards_failed
    assert refused.value.conflict


def test_a_conflict_on_a_transaction_without_accounts_is_reported_as_one() -> None:
    repo = DynamoLedgerRepository(
        CancellingClient([{"Code": "TransactionConflict"}]),
        accounts_table="acc",
        entries_table="ent",
        idempotency_table="idem",
    )
    claim = IdempotencyClaim(pk="idem|x", response=StoredResponse(request_hash="h", body={}), expires_at=1)
    with pytest.raises(TransactionRefused) as refused:
        repo.commit([], idempotency=claim)
    assert refused.value.conflict and refused.value.stale == {} and refused.value.replay is None


def test_a_moved_account_reports_its_current_state() -> None:
    item = {"user_id": {"S": "u1"}, "balance": {"N": "3"}, "version": {"N": "4"}, "created_at": {"S": "t"}}
    with pytest.raises(TransactionRefused) as refused:
        commit_with([{"Code": "ConditionalCheckFailed", "Item": item}, {"Code": "None"}])
    assert refused.value.stale["u1"].balance == 3 and refused.value.stale["u1"].version == 4
    assert not refused.value.conflict


def test_an_unexpected_reason_is_raised_as_it_came() -> None:
    with pytest.raises(ClientError):
        commit_with([{"Code": "ValidationError"}, {"Code": "None"}])
