"""POST /v1/admin/batches: many users in one transaction, all or nothing (real handler on moto)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent, chain_of
from tokenledger.service.admin import BATCH_OPERATIONS_MAX, STORED_RESPONSE_CHARS_MAX, TRANSACTION_ACTIONS_MAX

BATCHES = "/v1/admin/batches"


def new_users(count: int) -> list[str]:
    return [f"u-{uuid.uuid4().hex[:12]}" for _ in range(count)]


def fund(admin: Client, user_id: str, amount: int) -> None:
    response = admin.post(
        f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": amount, "reason": "test funds"}
    )
    assert response.status == 201, response.json


def test_the_limit_follows_from_the_transaction_limit() -> None:
    # Worst case, every operation on its own user: N entries + N account updates + 1 idempotency record.
    assert 2 * BATCH_OPERATIONS_MAX + 1 <= TRANSACTION_ACTIONS_MAX < 2 * (BATCH_OPERATIONS_MAX + 1) + 1
    assert BATCH_OPERATIONS_MAX == 49


def test_a_batch_over_many_users_writes_every_entry_and_answers_the_balances(admin: Client, aws: Any) -> None:
    alice, bob, carol = new_users(3)
    fund(admin, carol, 50)
    operations = [
        {"user_id": alice, "type": "payout", "amount": 30, "related_id": "p-9"},
        {"user_id": bob, "type": "grant", "amount": 5, "metadata": {"ticket": "T-1"}},
        {"user_id": carol, "type": "adjustment", "amount": -20},
    ]
    response = admin.post(BATCHES, {"operations": operations, "reason": "weekly settlement"})

    assert response.status == 201, response.json
    assert response.json["balances"] == {alice: 30, bob: 5, carol: 30}
    entries = response.json["entries"]
    assert [(e["user_id"], e["type"], e["amount"]) for e in entries] == [
        (alice, "payout", 30),
        (bob, "grant", 5),
        (carol, "adjustment", -20),
    ]
    assert entries[0]["counterparty"] == "prediction:p-9" and entries[0]["related_id"] == "p-9"
    assert entries[1]["metadata"] == {"ticket": "T-1"} and entries[1]["counterparty"] == "admin"
    assert all(e["actor"] == admin.sub and e["reason"] == "weekly settlement" for e in entries)
    assert assert_account_consistent(aws["dynamodb"], STACK, alice) == {"balance": 30, "version": 1, "entries": 1}
    assert assert_account_consistent(aws["dynamodb"], STACK, bob) == {"balance": 5, "version": 1, "entries": 1}
    assert assert_account_consistent(aws["dynamodb"], STACK, carol) == {"balance": 30, "version": 2, "entries": 2}


def test_two_operations_on_one_user_fold_into_consecutive_entries(admin: Client, aws: Any) -> None:
    alice, bob = new_users(2)
    fund(admin, alice, 10)
    operations = [
        {"user_id": alice, "type": "grant", "amount": 5},
        {"user_id": bob, "type": "grant", "amount": 7},
        # Only possible because the grant before it, in the same batch, raised the balance to 15.
        {"user_id": alice, "type": "adjustment", "amount": -12},
    ]
    response = admin.post(BATCHES, {"operations": operations, "reason": "correction"})

    assert response.status == 201, response.json
    entries = response.json["entries"]
    assert [(e["user_id"], e["seq"], e["balance_after"]) for e in entries] == [
        (alice, 2, 15),
        (bob, 1, 7),
        (alice, 3, 3),
    ]
    assert response.json["balances"] == {alice: 3, bob: 7}
    assert assert_account_consistent(aws["dynamodb"], STACK, alice) == {"balance": 3, "version": 3, "entries": 3}
    assert assert_account_consistent(aws["dynamodb"], STACK, bob) == {"balance": 7, "version": 1, "entries": 1}


def test_a_batch_failing_on_its_last_operation_moves_nothing_and_names_the_index(admin: Client, aws: Any) -> None:
    users = new_users(4)
    fund(admin, users[3], 10)
    operations = [{"user_id": u, "type": "grant", "amount": 100} for u in users[:3]]
    operations.append({"user_id": users[3], "type": "adjustment", "amount": -11})

    response = admin.post(BATCHES, {"operations": operations, "reason": "will fail"})

    assert response.status == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json
    assert problem["code"] == "insufficient_balance"
    assert (problem["index"], problem["user_id"], problem["balance"], problem["shortfall"]) == (3, users[3], 10, 1)
    for user_id in users[:3]:
        assert assert_account_consistent(aws["dynamodb"], STACK, user_id) == {"balance": 0, "version": 0, "entries": 0}
    assert assert_account_consistent(aws["dynamodb"], STACK, users[3]) == {"balance": 10, "version": 1, "entries": 1}


def test_the_index_named_is_the_first_operation_that_overdraws(admin: Client, aws: Any) -> None:
    alice, bob = new_users(2)
    fund(admin, alice, 10)
    operations = [
        {"user_id": alice, "type": "adjustment", "amount": -8},
        {"user_id": bob, "type": "adjustment", "amount": -1},  # the first to fail
        {"user_id": alice, "type": "adjustment", "amount": -3},  # fails too: 2 left after index 0
    ]
    response = admin.post(BATCHES, {"operations": operations, "reason": "two failures"})
    assert response.status == 409
    assert (response.json["index"], response.json["user_id"], response.json["shortfall"]) == (1, bob, 1)
    assert assert_account_consistent(aws["dynamodb"], STACK, alice)["balance"] == 10
    assert assert_account_consistent(aws["dynamodb"], STACK, bob)["version"] == 0


def test_a_full_batch_of_distinct_users_fits_one_transaction(admin: Client, aws: Any) -> None:
    users = new_users(BATCH_OPERATIONS_MAX)
    operations = [{"user_id": u, "type": "grant", "amount": 1 + i} for i, u in enumerate(users)]
    response = admin.post(BATCHES, {"operations": operations, "reason": "the limit"})
    assert response.status == 201, response.json
    assert len(response.json["entries"]) == BATCH_OPERATIONS_MAX
    for user_id in users:
        state = assert_account_consistent(aws["dynamodb"], STACK, user_id)
        assert state["version"] == 1 and state["balance"] == response.json["balances"][user_id]
    assert sum(response.json["balances"].values()) == sum(range(1, BATCH_OPERATIONS_MAX + 1))


def test_one_operation_over_the_limit_is_batch_too_large_and_moves_nothing(admin: Client, aws: Any) -> None:
    users = new_users(BATCH_OPERATIONS_MAX + 1)
    operations = [{"user_id": u, "type": "grant", "amount": 1} for u in users]
    response = admin.post(BATCHES, {"operations": operations, "reason": "too many"})
    assert response.status == 422
    assert response.json["code"] == "batch_too_large"
    assert response.json["operations_max"] == BATCH_OPERATIONS_MAX
    assert chain_of(aws["dynamodb"], STACK, users[0]) == []
    assert assert_account_consistent(aws["dynamodb"], STACK, users[-1])["version"] == 0


def test_an_oversized_batch_is_refused_before_its_operations_are_checked(admin: Client) -> None:
    operations = [{"user_id": "bad id!", "type": "grant", "amount": 0}] * 1000
    response = admin.post(BATCHES, {"operations": operations, "reason": "too many"})
    assert (response.status, response.json["code"]) == (422, "batch_too_large")


def test_an_answer_too_large_to_store_is_batch_too_large(admin: Client, aws: Any) -> None:
    users = new_users(BATCH_OPERATIONS_MAX)
    metadata = {f"k{i}": "x" * 500 for i in range(20)}  # each operation at the metadata limit
    operations = [{"user_id": u, "type": "grant", "amount": 1, "metadata": metadata} for u in users]
    response = admin.post(BATCHES, {"operations": operations, "reason": "big"})
    assert (response.status, response.json["code"]) == (422, "batch_too_large")
    assert assert_account_consistent(aws["dynamodb"], STACK, users[0])["version"] == 0


def test_an_answer_just_under_the_stored_size_bound_is_written_and_replayed(admin: Client, aws: Any) -> None:
    users = new_users(BATCH_OPERATIONS_MAX)
    metadata = {f"k{i}": "x" * 500 for i in range(13)}
    operations = [{"user_id": u, "type": "grant", "amount": 1, "metadata": metadata} for u in users]
    body = {"operations": operations, "reason": "big but fits"}
    first = admin.post(BATCHES, body, key="big-batch")
    assert first.status == 201, first.json
    assert 300_000 < len(first.body) < STORED_RESPONSE_CHARS_MAX  # the idempotency item holds all of it
    again = admin.post(BATCHES, body, key="big-batch")
    assert again.headers.get("idempotent-replayed") == "true" and again.json == first.json
    assert assert_account_consistent(aws["dynamodb"], STACK, users[-1]) == {"balance": 1, "version": 1, "entries": 1}


def test_a_batch_is_idempotent_on_its_key(admin: Client, aws: Any) -> None:
    alice, bob = new_users(2)
    body = {
        "operations": [
            {"user_id": alice, "type": "grant", "amount": 3},
            {"user_id": bob, "type": "grant", "amount": 4},
        ],
        "reason": "once",
    }
    first = admin.post(BATCHES, body, key="batch-once")
    again = admin.post(BATCHES, body, key="batch-once")
    assert first.status == again.status == 201
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json == first.json
    other = admin.post(BATCHES, {**body, "reason": "different"}, key="batch-once")
    assert (other.status, other.json["code"]) == (422, "idempotency_key_reused")
    assert assert_account_consistent(aws["dynamodb"], STACK, alice) == {"balance": 3, "version": 1, "entries": 1}
    assert assert_account_consistent(aws["dynamodb"], STACK, bob) == {"balance": 4, "version": 1, "entries": 1}


def test_a_refused_batch_replays_its_refusal_nowhere_but_can_be_retried_once_funded(admin: Client, aws: Any) -> None:
    (alice,) = new_users(1)
    body = {"operations": [{"user_id": alice, "type": "adjustment", "amount": -5}], "reason": "debit"}
    assert admin.post(BATCHES, body, key="retry-me").status == 409
    fund(admin, alice, 5)
    retried = admin.post(BATCHES, body, key="retry-me")
    assert retried.status == 201, retried.json
    assert assert_account_consistent(aws["dynamodb"], STACK, alice) == {"balance": 0, "version": 2, "entries": 2}


def test_bad_operations_are_validation_errors(admin: Client) -> None:
    (alice,) = new_users(1)
    cases: list[dict[str, Any]] = [
        {"operations": [], "reason": "empty"},
        {"operations": [{"user_id": alice, "type": "grant", "amount": 5}]},  # no reason
        {"operations": [{"user_id": alice, "type": "grant", "amount": -5}], "reason": "r"},
        {"operations": [{"user_id": alice, "type": "adjustment", "amount": 0}], "reason": "r"},
        {"operations": [{"user_id": alice, "type": "grant", "amount": 1.0}], "reason": "r"},
        {"operations": [{"user_id": alice, "type": "grant", "amount": True}], "reason": "r"},
        {"operations": [{"user_id": alice, "type": "commitment", "amount": 5}], "reason": "r"},
        {"operations": [{"user_id": alice, "type": "grant", "amount": 1_000_000_001}], "reason": "r"},
        {"operations": [{"user_id": "no spaces", "type": "grant", "amount": 5}], "reason": "r"},
        {"operations": [{"user_id": alice, "type": "grant", "amount": 5, "extra": 1}], "reason": "r"},
    ]
    for body in cases:
        response = admin.post(BATCHES, body)
        assert (response.status, response.json["code"]) == (422, "validation_error"), body
    missing_key = admin.post(
        BATCHES, {"operations": [{"user_id": alice, "type": "grant", "amount": 5}], "reason": "r"}, key=None
    )
    assert (missing_key.status, missing_key.json["code"]) == (422, "validation_error")


def test_batches_are_for_admins_only(user: Client, anonymous: Client) -> None:
    body = {"operations": [{"user_id": user.sub, "type": "grant", "amount": 5}], "reason": "self-service"}
    assert (user.post(BATCHES, body).status, user.post(BATCHES, body).json["code"]) == (403, "forbidden")
    assert anonymous.post(BATCHES, body).json["code"] == "unauthorized"
    too_many = {"operations": body["operations"] * (BATCH_OPERATIONS_MAX + 1), "reason": "r"}
    assert anonymous.post(BATCHES, too_many).status == 401
    assert user.post(BATCHES, too_many).status == 403
