"""Every bad input gets its clear 4xx problem+json answer, never a 5xx, and moves nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent

OK = {"prediction_id": "p-1", "amount": 5}


def fund(admin: Client, user_id: str) -> None:
    assert (
        admin.post(f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": 100, "reason": "t"}).status
        == 201
    )


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps(OK | {"amount": 1.0}),
        json.dumps(OK | {"amount": 5.5}),
        json.dumps(OK | {"amount": True}),
        json.dumps(OK | {"amount": "10"}),
        json.dumps(OK | {"amount": None}),
        json.dumps(OK | {"amount": 0}),
        json.dumps(OK | {"amount": -5}),
        json.dumps(OK | {"amount": 1_000_000_001}),
        json.dumps(OK | {"amount": 10**30}),
        '{"prediction_id": "p-1", "amount": NaN}',
        '{"prediction_id": "p-1", "amount": Infinity}',
        "{not json",
        "",
        "[]",
        '"just a string"',
        json.dumps({"amount": 5}),
        json.dumps({"prediction_id": "p-1"}),
        json.dumps(OK | {"prediction_id": ""}),
        json.dumps(OK | {"prediction_id": "x" * 200}),
        json.dumps(OK | {"prediction_id": 12}),
        json.dumps(OK | {"unexpected": "field"}),
        json.dumps(OK | {"metadata": {f"k{i}": "v" for i in range(21)}}),
        json.dumps(OK | {"metadata": {"k" * 41: "v"}}),
        json.dumps(OK | {"metadata": {"k": "v" * 501}}),
        json.dumps(OK | {"metadata": {"k": 1}}),
        json.dumps(OK | {"metadata": ["a"]}),
    ],
)
def test_bad_commitment_bodies_are_422(user: Client, admin: Client, aws: Any, raw: str) -> None:
    fund(admin, user.sub)
    response = user.post("/v1/commitments", raw=raw)
    assert response.status == 422, response.json
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["code"] == "validation_error" and response.json["errors"]
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 100


def test_limits_are_inclusive(user: Client, admin: Client) -> None:
    fund(admin, user.sub)
    meta = {f"k{i:02d}" + "x" * 36: "v" * 500 for i in range(20)}
    assert user.post("/v1/commitments", OK | {"amount": 1, "metadata": meta}).status == 201
    big = admin.post(
        f"/v1/admin/accounts/{user.sub}/entries", {"type": "grant", "amount": 1_000_000_000, "reason": "max"}
    )
    assert big.status == 201


@pytest.mark.parametrize(
    "headers",
    [{}, {"idempotency-key": "x" * 256}, {"idempotency-key": "caf\u00e9"}],
)
def test_a_missing_or_malformed_idempotency_key_is_422(user: Client, admin: Client, headers: dict[str, str]) -> None:
    fund(admin, user.sub)
    response = user.post("/v1/commitments", OK, key=None, headers=headers)
    assert response.status == 422 and response.json["code"] == "validation_error"


@pytest.mark.parametrize("if_match", ['"abc"', '"-1"', "", '"1.5"'])
def test_a_malformed_if_match_is_422(user: Client, admin: Client, if_match: str) -> None:
    fund(admin, user.sub)
    response = user.post("/v1/commitments", OK, headers={"if-match": if_match})
    assert response.status == 422 and response.json["code"] == "validation_error"


@pytest.mark.parametrize(
    "body",
    [
        {"type": "grant", "amount": 5},
        {"type": "grant", "amount": 5, "reason": ""},
        {"type": "grant", "amount": 5, "reason": "   "},
        {"type": "grant", "amount": -5, "reason": "x"},
        {"type": "adjustment", "amount": 0, "reason": "x"},
        {"type": "adjustment", "amount": -1_000_000_001, "reason": "x"},
        {"type": "purchase", "amount": 5, "reason": "x"},
        {"type": "commitment", "amount": 5, "reason": "x"},
        {"type": "grant", "amount": 5.0, "reason": "x"},
        {"type": "grant", "amount": 5, "reason": "x" * 501},
        {"type": "payout", "amount": 5, "reason": "x", "related_id": "bad id with spaces"},
    ],
)
def test_bad_admin_entries_are_422(admin: Client, body: dict[str, Any]) -> None:
    response = admin.post("/v1/admin/accounts/u-valid/entries", body)
    assert response.status == 422 and response.json["code"] == "validation_error"


def test_a_bad_user_id_in_the_path_is_422(admin: Client) -> None:
    response = admin.post("/v1/admin/accounts/bad%20id/entries", {"type": "grant", "amount": 5, "reason": "x"})
    assert response.status == 422


@pytest.mark.parametrize(
    "query",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"type": "bogus"},
        {"cursor": "forged"},
        {"cursor": "x" * 2000},
    ],
)
def test_bad_history_queries_are_422(user: Client, query: dict[str, str]) -> None:
    response = user.get("/v1/transactions", **query)
    assert response.status == 422 and response.json["code"] == "validation_error"


def test_a_cursor_from_another_user_is_422(api: Any, user: Client, admin: Client) -> None:
    for _ in range(3):
        fund(admin, user.sub)
    cursor = user.get("/v1/transactions", limit=1).json["next_cursor"]
    assert cursor
    other = Client(api, "other-user")
    response = other.get("/v1/transactions", limit=1, cursor=cursor)
    assert response.status == 422 and response.json["code"] == "validation_error"


@pytest.mark.parametrize("required", ["-1", "abc", "1.5", "1000000001"])
def test_a_bad_required_is_422(user: Client, required: str) -> None:
    assert user.get("/v1/balance", required=required).status == 422


def test_a_non_json_content_type_is_a_4xx(user: Client) -> None:
    response = user.post("/v1/commitments", raw="amount=5", headers={"content-type": "text/plain"})
    assert 400 <= response.status < 500
