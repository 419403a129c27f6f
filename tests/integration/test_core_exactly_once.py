"""Exactly once under concurrency and under a timeout after DynamoDB committed."""

from __future__ import annotations

import json
import threading
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ReadTimeoutError

from infra.events import http_event, json_body
from infra.lambdas import Environment
from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent


def commitment_event(user_id: str, amount: int, key: str) -> dict[str, Any]:
    route = next(r for r in STACK.routes() if r.route_key == "POST /v1/commitments")
    return http_event(
        route,
        path="/v1/commitments",
        headers={"content-type": "application/json", "idempotency-key": key},
        body=json.dumps({"prediction_id": "p-1", "amount": amount}),
        claims={"sub": user_id},
    )


class TimeoutAfterCommit:
    """Wraps a DynamoDB client: the next transaction commits, then the caller sees a timeout."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.armed = True

    def transact_write_items(self, **kwargs: Any) -> Any:
        result = self._client.transact_write_items(**kwargs)
        if self.armed:
            self.armed = False
            raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_a_timeout_after_commit_then_a_retry_moves_tokens_once(admin: Client, user_id: str, aws: Any) -> None:
    grant = {"type": "grant", "amount": 100, "reason": "funds"}
    assert admin.post(f"/v1/admin/accounts/{user_id}/entries", grant).status == 201
    environment = Environment(STACK.functions()["WritesFunction"])
    repo = environment.module.ledger.repo
    repo.client = TimeoutAfterCommit(repo.client)

    first = environment.invoke(commitment_event(user_id, 5, "buy-once"))
    assert first["statusCode"] == 500  # the caller cannot know the write committed
    assert json_body(first)["code"] == "internal_error"
    assert assert_account_consistent(aws["dynamodb"], STACK, user_id)["balance"] == 95  # it did

    # The client retries with the same key, on another (cold) environment as Lambda may.
    retry_environment = Environment(STACK.functions()["WritesFunction"])
    for environment_used in (environment, retry_environment):
        retry = environment_used.invoke(commitment_event(user_id, 5, "buy-once"))
        assert retry["statusCode"] == 201
        assert retry["headers"].get("Idempotent-Replayed") == "true"
        assert json_body(retry)["balance"] == 95 and json_body(retry)["entry"]["amount"] == -5
    assert assert_account_consistent(aws["dynamodb"], STACK, user_id) == {"balance": 95, "version": 2, "entries": 2}


@pytest.mark.parametrize("threads", [8])
def test_concurrent_commitments_on_one_account_lose_nothing(
    api: Any, admin: Client, user_id: str, aws: Any, threads: int
) -> None:
    start = 60
    assert (
        admin.post(f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": start, "reason": "t"}).status
        == 201
    )
    per_thread = 12
    outcomes: Counter[int] = Counter()
    refusals: Counter[str] = Counter()
    debited: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads)

    def client(index: int) -> None:
        me = Client(api, user_id)
        barrier.wait()
        for n in range(per_thread):
            amount = 1 + (index + n) % 3
            response = me.post(
                "/v1/commitments", {"prediction_id": f"p-{index}", "amount": amount}, key=f"t{index}-{n}"
            )
            with lock:
                outcomes[response.status] += 1
                if response.status == 201:
                    debited.append(amount)
                else:
                    assert response.json["code"] in ("insufficient_balance", "contention"), response.json
                    refusals[response.json["code"]] += 1

    workers = [threading.Thread(target=client, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert sum(outcomes.values()) == threads * per_thread
    assert not any(status >= 500 for status in outcomes)
    state = assert_account_consistent(aws["dynamodb"], STACK, user_id)
    assert state["balance"] == start - sum(debited)
    assert state["entries"] == 1 + len(debited)
    # 8 x 12 x ~2 tokens asks for more than 60: some must be refused for a real shortfall,
    # and a refused debit of at most 3 means the account ended (nearly) drained.
    assert refusals["insufficient_balance"] > 0
    assert state["balance"] < 3
