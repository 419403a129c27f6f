"""Issue #13 over HTTP, on the selected engine: forged history cursors (item 7), group names that
merely contain `admin` (item 9), machine clients with the `tokenledger/admin` scope (item 10)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from infra.api import LocalApi
from infra.lambdas import Environment
from tests.conftest import STACK, Client


def grant(api: LocalApi, claims: dict[str, Any], user_id: str) -> Any:
    return api.request(
        "POST",
        f"/v1/admin/accounts/{user_id}/entries",
        claims=claims,
        headers={"content-type": "application/json", "idempotency-key": f"k-{uuid.uuid4().hex}"},
        body=json.dumps({"type": "grant", "amount": 5, "reason": "machine grant"}),
    )


def test_a_machine_client_with_the_admin_scope_may_call_admin_routes_other_scopes_may_not(
    api: LocalApi, user_id: str, subtests: pytest.Subtests
) -> None:
    machine = {"sub": "7f1c-prediction-service", "client_id": "7f1c", "scope": "tokenledger/admin"}
    created = grant(api, machine, user_id)
    assert created.status == 201, created.body
    assert created.json["balance"] == 5
    read = api.request("GET", "/v1/admin/balances", claims=machine, query={"user_ids": user_id})
    assert read.status == 200 and read.json["total"] == 5
    for scope in ("tokenledger/read", "tokenledger/admin.write", "tokenledger/administrator", "admin", ""):
        with subtests.test(scope):
            refused = grant(api, {**machine, "scope": scope}, user_id)
            assert (refused.status, refused.json["code"]) == (403, "forbidden"), refused.body


def test_a_group_whose_name_merely_contains_admin_is_not_admin(
    api: LocalApi, user_id: str, subtests: pytest.Subtests
) -> None:
    for groups in ("[ops,admin]", "ops,admin", '["ops,admin"]', "admin", "[administrators]", '[ops "admin"]'):
        with subtests.test(groups):
            refused = grant(api, {"sub": "u-ops", "cognito:groups": groups}, user_id)
            assert (refused.status, refused.json["code"]) == (403, "forbidden"), refused.body
    for groups in ("[support admin]", '["support","admin"]'):
        assert grant(api, {"sub": "u-ops", "cognito:groups": groups}, user_id).status == 201


def _unkeyed(payload: str) -> str:
    import base64
    import hashlib

    raw = f"{hashlib.sha256(payload.encode()).hexdigest()[:12]}.{payload}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_forged_cursors_are_422_and_real_ones_work_in_any_environment(
    api: LocalApi, admin: Client, user: Client, subtests: pytest.Subtests
) -> None:
    for _ in range(3):
        assert (
            admin.post(f"/v1/admin/accounts/{user.sub}/entries", {"type": "grant", "amount": 1, "reason": "r"}).status
            == 201
        )
    forged = {
        "huge seq (was 500 on DynamoDB Local)": _unkeyed(json.dumps({"u": user.sub, "s": 10**40, "t": ""})),
        "plausible seq": _unkeyed(json.dumps({"u": user.sub, "s": 2, "t": ""})),
        "not base64": "%%%",
    }
    for name, cursor in forged.items():
        with subtests.test(name):
            response = user.get("/v1/transactions", cursor=cursor)
            assert (response.status, response.json["code"]) == (422, "validation_error"), response.body
    first = user.get("/v1/transactions", limit=1)
    assert first.status == 200 and first.json["next_cursor"]
    # another execution environment (another Lambda instance) reads the same key from the secret
    other = Environment(STACK.functions()["ReadsFunction"])
    from infra.events import http_event

    route = next(r for r in STACK.routes() if r.path == "/v1/transactions")
    event = http_event(
        route,
        path="/v1/transactions",
        claims={"sub": user.sub},
        query={"limit": "1", "cursor": first.json["next_cursor"]},
    )
    page = other.invoke(event)
    assert page["statusCode"] == 200, page["body"]
    assert [e["seq"] for e in json.loads(page["body"])["items"]] == [2]
    # ... the template's CursorSecret, not a key of this process
    from tokenledger.service.cursor import encode_cursor

    made = other.module.ledger.cursors.encode(caller=user.sub, seq=3, entry_type=None)
    assert made == first.json["next_cursor"] != encode_cursor(caller=user.sub, seq=3, entry_type=None)


def test_no_function_calls_aws_while_it_is_imported(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #13 item 8: the audit and reconcile functions called DescribeTable at import, so a
    throttled cold start failed the environment. Every call now waits for the first request."""
    import botocore.client

    calls: list[str] = []

    def refuse(self: Any, operation: str, params: Any) -> Any:
        calls.append(f"{self.meta.service_model.service_name}:{operation}")
        raise AssertionError(f"AWS call at import: {operation}")

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", refuse)
    for name, spec in STACK.functions().items():
        Environment(spec)
        assert calls == [], (name, calls)
