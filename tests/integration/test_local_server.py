"""`make run`'s server, started for real: auth like API Gateway, and moto atomic under concurrent HTTP."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra import devauth
from infra.template import Stack
from tests.integration.local_stack import RunningStack, http, local_stack

CONCURRENT_CLIENTS = 6
COMMITMENTS_PER_CLIENT = 6
COMMITMENT_AMOUNT = 7
STARTING_TOKENS = 150  # less than 6 x 6 x 7 = 252: some commitments must be refused
CONTENTION_RETRIES_MAX = 20


@pytest.fixture(scope="module")
def devkey_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("devkey")


@pytest.fixture(scope="module")
def stack(devkey_dir: Path) -> Iterator[RunningStack]:
    with local_stack(devkey_dir=devkey_dir) as running:
        yield running


def bearer(stack: RunningStack, sub: str, *groups: str) -> dict[str, str]:
    return {"authorization": "Bearer " + devauth.mint(sub, groups, directory=stack.devkey_dir)}


def new_user() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


def grant(stack: RunningStack, user: str, amount: int) -> None:
    status, _, body = http(
        "POST",
        f"{stack.url}/v1/admin/accounts/{user}/entries",
        headers={**bearer(stack, "ops", "admin"), "idempotency-key": uuid.uuid4().hex},
        body={"type": "grant", "amount": amount, "reason": "test setup"},
    )
    assert status == 201, body


def history(stack: RunningStack, user: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(50):
        query = "?limit=100" + (f"&cursor={cursor}" if cursor else "")
        status, _, page = http("GET", f"{stack.url}/v1/transactions{query}", headers=bearer(stack, user))
        assert status == 200, page
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("history did not end")


def assert_chain_seen_by_user(stack: RunningStack, user: str) -> dict[str, Any]:
    """The invariants as the user can see them: seq 1..n, the chain holds, balance and version match."""
    entries = sorted(history(stack, user), key=lambda e: e["seq"])
    status, _, balance = http("GET", f"{stack.url}/v1/balance", headers=bearer(stack, user))
    assert status == 200
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1)), "seq must run 1..n without gaps"
    running = 0
    for entry in entries:
        running += entry["amount"]
        assert entry["balance_after"] == running, f"chain breaks at seq {entry['seq']}"
        assert entry["balance_after"] >= 0, f"negative balance at seq {entry['seq']}"
    assert balance["version"] == len(entries)
    assert balance["balance"] == running >= 0
    return {"balance": balance, "entries": entries}


# ---------------------------------------------------------------- auth like API Gateway
def test_balance_without_a_token_is_401_problem_json(stack: RunningStack) -> None:
    status, headers, body = http("GET", f"{stack.url}/v1/balance")

    assert status == 401
    assert headers["content-type"] == "application/problem+json"
    assert headers["www-authenticate"].startswith("Bearer")
    assert body["code"] == "unauthorized"
    assert body["status"] == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer not-a-jwt",
        "Basic dXNlcjpwYXNz",
        "Bearer",
    ],
)
def test_a_malformed_authorization_header_is_401(stack: RunningStack, authorization: str) -> None:
    status, _, body = http("GET", f"{stack.url}/v1/balance", headers={"authorization": authorization})

    assert status == 401
    assert body["code"] == "unauthorized"


def test_a_token_signed_with_another_key_is_401(stack: RunningStack, tmp_path: Path) -> None:
    forged = devauth.mint("alice", directory=tmp_path / "someone-elses-key")

    status, _, body = http("GET", f"{stack.url}/v1/balance", headers={"authorization": f"Bearer {forged}"})

    assert status == 401
    assert body["code"] == "unauthorized"


def test_an_expired_token_is_401(stack: RunningStack) -> None:
    stale = devauth.mint("alice", ttl_s=60, now=time.time() - 3600, directory=stack.devkey_dir)

    status, _, body = http("GET", f"{stack.url}/v1/balance", headers={"authorization": f"Bearer {stale}"})

    assert status == 401
    assert "expired" in body["detail"]


def test_balance_with_a_token_is_the_callers(stack: RunningStack) -> None:
    user = new_user()

    status, headers, body = http("GET", f"{stack.url}/v1/balance", headers=bearer(stack, user))

    assert status == 200
    assert headers["content-type"] == "application/json"
    assert body["user_id"] == user
    assert body["balance"] == 0
    assert body["version"] == 0


def test_groups_reach_the_handler_as_api_gateway_passes_them(stack: RunningStack) -> None:
    user = new_user()
    body = {"type": "grant", "amount": 5, "reason": "groups test"}
    url = f"{stack.url}/v1/admin/accounts/{user}/entries"

    as_user = http("POST", url, headers={**bearer(stack, user), "idempotency-key": "k-1"}, body=body)
    as_admin = http(
        "POST", url, headers={**bearer(stack, "ops", "admin", "support"), "idempotency-key": "k-1"}, body=body
    )

    assert as_user[0] == 403
    assert as_user[2]["code"] == "forbidden"
    assert as_admin[0] == 201
    assert as_admin[2]["entry"]["actor"] == "ops"
    assert as_admin[2]["balance"] == 5


def test_an_unknown_route_is_404_problem_json(stack: RunningStack) -> None:
    status, headers, body = http("GET", f"{stack.url}/v1/nothing-here", headers=bearer(stack, "alice"))

    assert status == 404
    assert headers["content-type"] == "application/problem+json"
    assert body["code"] == "not_found"


def test_the_stripe_webhook_route_needs_no_jwt(stack: RunningStack) -> None:
    if not any(r.path == "/v1/webhooks/stripe" for r in Stack().routes()):
        pytest.skip("template.yaml has no POST /v1/webhooks/stripe yet (the Stripe issue adds it)")

    status, _, body = http("POST", f"{stack.url}/v1/webhooks/stripe", body={"type": "ping"})

    assert status == 400, "an unsigned event is refused by the function, not by the JWT check"
    assert body["code"] == "invalid_signature"


def test_openapi_json_lists_every_route_of_the_template(stack: RunningStack) -> None:
    status, _, document = http("GET", f"{stack.url}/openapi.json")

    assert status == 200
    served = {(method.upper(), path) for path, ops in document["paths"].items() for method in ops}
    assert served == {(r.method, r.path) for r in Stack().routes()}


# ---------------------------------------------------------------- moto stays atomic
def test_concurrent_commitments_through_http_lose_nothing_and_never_overdraw(stack: RunningStack) -> None:
    user = new_user()
    grant(stack, user, STARTING_TOKENS)
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CONCURRENT_CLIENTS)

    def client(number: int) -> None:
        headers = bearer(stack, user)
        start.wait()
        for index in range(COMMITMENTS_PER_CLIENT):
            key = f"c{number}-{index}-{uuid.uuid4().hex[:6]}"
            body = {"prediction_id": f"p-{number}", "amount": COMMITMENT_AMOUNT}
            for _ in range(CONTENTION_RETRIES_MAX):
                status, _, answer = http(
                    "POST", f"{stack.url}/v1/commitments", headers={**headers, "idempotency-key": key}, body=body
                )
                if status == 409 and answer.get("code") == "contention":
                    continue  # the contract's advice: retry with the same key
                break
            outcome = "committed" if status == 201 else str(answer.get("code") if isinstance(answer, dict) else status)
            with lock:
                outcomes[outcome] += 1
                if status not in (201, 409):
                    failures.append(f"{status} {answer}")
                elif status == 201 and answer["entry"]["related_id"] != body["prediction_id"]:
                    failures.append(f"request for {body['prediction_id']} answered with {answer['entry']}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CONCURRENT_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert set(outcomes) <= {"committed", "insufficient_balance"}, outcomes
    committed = outcomes["committed"]
    assert committed == STARTING_TOKENS // COMMITMENT_AMOUNT, "every token that could be committed was, no more"
    seen = assert_chain_seen_by_user(stack, user)
    assert seen["balance"]["balance"] == STARTING_TOKENS - committed * COMMITMENT_AMOUNT
    assert [e["type"] for e in seen["entries"]].count("commitment") == committed


def test_concurrent_requests_in_one_process_each_see_their_own_event() -> None:
    """Powertools keeps the current event on the class `BaseRouter`; the local stack makes it per thread."""
    from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

    from infra.events import http_event
    from infra.lambdas import isolate_powertools_request_state
    from infra.template import Route

    isolate_powertools_request_state()
    both_resolving = threading.Barrier(2, timeout=10)
    seen: dict[str, str] = {}

    def environment(path: str) -> None:
        app = APIGatewayHttpResolver()  # one module copy's resolver

        @app.get(path)
        def handler() -> dict[str, str]:
            both_resolving.wait()  # the other request has set its event by now
            return {"path": app.current_event.path}

        route = Route(method="GET", path=path, function="F", authorized=False)
        answer = app.resolve(http_event(route, path=path), None)
        seen[path] = json.loads(answer["body"])["path"]

    threads = [threading.Thread(target=environment, args=(path,)) for path in ("/a", "/b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert seen == {"/a": "/a", "/b": "/b"}
