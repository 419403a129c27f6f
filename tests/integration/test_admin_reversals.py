"""POST /v1/admin/entries/{entry_id}/reversal: a compensating entry, once (real handler on moto)."""

from __future__ import annotations

import json
import threading
from typing import Any

from infra.api import LocalApi
from infra.events import http_event, json_body
from infra.lambdas import Environment
from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent


def grant(admin: Client, user_id: str, amount: int) -> dict[str, Any]:
    response = admin.post(
        f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": amount, "reason": "test funds"}
    )
    assert response.status == 201, response.json
    entry: dict[str, Any] = response.json["entry"]
    return entry


def reversal_path(entry_id: str) -> str:
    return f"/v1/admin/entries/{entry_id}/reversal"


def test_a_reversal_writes_the_compensating_entry(admin: Client, user: Client, aws: Any) -> None:
    original = grant(admin, user.sub, 40)
    response = admin.post(reversal_path(original["entry_id"]), {"reason": "granted to the wrong user"})

    assert response.status == 201, response.json
    entry = response.json["entry"]
    assert response.json["balance"] == 0
    assert (entry["type"], entry["amount"], entry["reverses"], entry["seq"]) == (
        "reversal",
        -40,
        original["entry_id"],
        2,
    )
    assert (entry["actor"], entry["reason"]) == (admin.sub, "granted to the wrong user")
    assert entry["counterparty"] == original["counterparty"]
    # The user sees both lines in their history: the original is never edited.
    history = user.get("/v1/transactions").json["items"]
    assert [(e["type"], e["amount"]) for e in history] == [("reversal", -40), ("grant", 40)]
    assert history[1] == original
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 0, "version": 2, "entries": 2}


def test_reversing_a_commitment_returns_the_tokens(admin: Client, user: Client, aws: Any) -> None:
    grant(admin, user.sub, 50)
    commitment = user.post("/v1/commitments", {"prediction_id": "p-1", "amount": 30}).json["entry"]
    response = admin.post(reversal_path(commitment["entry_id"]), {"reason": "prediction voided"})
    assert response.status == 201, response.json
    assert (response.json["entry"]["amount"], response.json["balance"]) == (30, 50)
    assert response.json["entry"]["related_id"] == "p-1"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 50, "version": 3, "entries": 3}


def test_a_second_reversal_is_already_reversed(admin: Client, user: Client, aws: Any) -> None:
    grant(admin, user.sub, 100)
    commitment = user.post("/v1/commitments", {"prediction_id": "p-2", "amount": 10}).json["entry"]
    assert admin.post(reversal_path(commitment["entry_id"]), {"reason": "first"}).status == 201

    second = admin.post(reversal_path(commitment["entry_id"]), {"reason": "second"})
    assert second.status == 409
    assert second.headers["content-type"] == "application/problem+json"
    assert second.json["code"] == "already_reversed"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 100, "version": 3, "entries": 3}


def test_a_second_reversal_of_a_credit_is_already_reversed_not_a_shortfall(
    admin: Client, user: Client, aws: Any
) -> None:
    original = grant(admin, user.sub, 40)
    assert admin.post(reversal_path(original["entry_id"]), {"reason": "first"}).status == 201
    # The balance is 0 now, so the second attempt fails on the balance before the guard is tried.
    second = admin.post(reversal_path(original["entry_id"]), {"reason": "second"})
    assert (second.status, second.json["code"]) == (409, "already_reversed")
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 0, "version": 2, "entries": 2}


def test_reversing_a_credit_already_spent_is_insufficient_balance(admin: Client, user: Client, aws: Any) -> None:
    original = grant(admin, user.sub, 40)
    assert user.post("/v1/commitments", {"prediction_id": "p-3", "amount": 25}).status == 201

    response = admin.post(reversal_path(original["entry_id"]), {"reason": "fraud"})
    assert response.status == 409
    assert (response.json["code"], response.json["balance"], response.json["shortfall"]) == (
        "insufficient_balance",
        15,
        25,
    )
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 15, "version": 2, "entries": 2}
    # Nothing was marked reversed: once the tokens are back, the reversal goes through.
    grant(admin, user.sub, 25)
    assert admin.post(reversal_path(original["entry_id"]), {"reason": "fraud"}).status == 201
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 0, "version": 4, "entries": 4}


def test_an_unknown_entry_is_not_found(admin: Client) -> None:
    response = admin.post(reversal_path("01JZZZZZZZZZZZZZZZZZZZZZZZ"), {"reason": "typo"})
    assert (response.status, response.json["code"]) == (404, "not_found")


def test_a_retried_reversal_replays_instead_of_refusing(admin: Client, user: Client, aws: Any) -> None:
    original = grant(admin, user.sub, 40)
    first = admin.post(reversal_path(original["entry_id"]), {"reason": "retry"}, key="rev-1")
    again = admin.post(reversal_path(original["entry_id"]), {"reason": "retry"}, key="rev-1")
    assert first.status == again.status == 201
    assert again.headers.get("idempotent-replayed") == "true" and again.json == first.json
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 0, "version": 2, "entries": 2}


def test_reversals_need_a_reason_a_key_and_an_admin(admin: Client, user: Client) -> None:
    original = grant(admin, user.sub, 10)
    path = reversal_path(original["entry_id"])
    assert admin.post(path, {}).json["code"] == "validation_error"
    assert admin.post(path, {"reason": "  "}).json["code"] == "validation_error"
    assert admin.post(path, {"reason": "r"}, key=None).json["code"] == "validation_error"
    assert (user.post(path, {"reason": "mine"}).status, user.post(path, {"reason": "r"}).json["code"]) == (
        403,
        "forbidden",
    )


def test_two_reversals_at_the_same_time_write_one(api: LocalApi, admin: Client, user: Client, aws: Any) -> None:
    grant(admin, user.sub, 100)
    commitment = user.post("/v1/commitments", {"prediction_id": "p-4", "amount": 60}).json["entry"]
    path = reversal_path(commitment["entry_id"])
    found = api.match("POST", path)
    assert found is not None
    route, params = found
    spec = STACK.functions()[route.function]
    # One warm Lambda environment per concurrent request, as Lambda would run them.
    environments = [Environment(spec) for _ in range(2)]
    barrier = threading.Barrier(len(environments))
    answers: list[tuple[int, dict[str, Any]]] = []
    lock = threading.Lock()

    def reverse(index: int) -> None:
        event = http_event(
            route,
            path=path,
            path_parameters=params,
            headers={"content-type": "application/json", "idempotency-key": f"race-{index}"},
            body=json.dumps({"reason": f"racer {index}"}),
            claims=admin.claims,
        )
        barrier.wait()
        raw = environments[index].invoke(event)
        with lock:
            answers.append((raw["statusCode"], json_body(raw)))

    threads = [threading.Thread(target=reverse, args=(i,)) for i in range(len(environments))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    statuses = sorted(status for status, _ in answers)
    assert statuses == [201, 409], answers
    refused = next(body for status, body in answers if status == 409)
    assert refused["code"] == "already_reversed"
    state = assert_account_consistent(aws["dynamodb"], STACK, user.sub)
    assert state == {"balance": 100, "version": 3, "entries": 3}
    history = user.get("/v1/transactions").json["items"]
    assert [e["type"] for e in history].count("reversal") == 1
