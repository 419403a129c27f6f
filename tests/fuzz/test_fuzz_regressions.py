"""Bugs the API fuzzer found, each pinned by a test named after it."""

from __future__ import annotations

import json

import pytest

from tests.conftest import Client


@pytest.mark.parametrize("content_type", ["multipart/form-data", "multipart/form-data; charset=utf-8"])
def test_regression_multipart_without_boundary_is_415_not_500(user: Client, content_type: str) -> None:
    """Found by schemathesis: Powertools raised a bare ValueError for a multipart body without a
    boundary, which the catch-all answered 500. Bad input is a 4xx: 415, nothing moved."""
    response = user.post("/v1/commitments", raw="--x\\r\\n", headers={"content-type": content_type})
    assert response.status == 415, response.body
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["code"] == "unsupported_media_type"
    assert user.get("/v1/balance").json["version"] == 0


def test_regression_multipart_without_boundary_still_401_without_a_token(anonymous: Client) -> None:
    response = anonymous.post("/v1/commitments", raw="x", headers={"content-type": "multipart/form-data"})
    assert response.status == 401, response.body
    assert json.loads(response.body)["code"] == "unauthorized"


def test_regression_a_body_that_is_not_utf8_is_422_not_500(admin: Client, user_id: str) -> None:
    """Found by schemathesis: a JSON POST whose bytes are not UTF-8 (API Gateway hands them over
    base64-encoded) made Powertools raise UnicodeDecodeError while parsing: 500. Now 422."""
    response = admin.api.request(
        "POST",
        f"/v1/admin/accounts/{user_id}/entries",
        claims=admin.claims,
        headers={"content-type": "application/json", "idempotency-key": "k-not-utf8"},
        body=b"W\xf15Z\xd5\x99",
    )
    assert response.status == 422, response.body
    assert response.json["code"] == "validation_error"
    assert admin.get("/v1/admin/balances", user_ids=user_id).json["balances"][0]["version"] == 0


# Shapes nobody planned (issue #13 item 6): deep nesting and integers of thousands of digits.
HOSTILE_BODIES = {
    "nested 100,000 deep": "[" * 100_000 + "]" * 100_000,
    "object nested 5,000 deep": '{"a":' * 5_000 + "1" + "}" * 5_000,
    "amount of 5,000 digits": '{"prediction_id": "p-1", "amount": ' + "9" * 5_000 + "}",
    "negative amount of 5,000 digits": '{"prediction_id": "p-1", "amount": -' + "9" * 5_000 + "}",
    "float of 5,000 digits": '{"prediction_id": "p-1", "amount": 1.' + "9" * 5_000 + "}",
    "exponent": '{"prediction_id": "p-1", "amount": 1e999999}',
}


def test_regression_hostile_json_is_422_never_500(user: Client, subtests: pytest.Subtests) -> None:
    """Before: RecursionError/ValueError reached the catch-all: 500. (One world for all shapes.)"""
    for name, body in HOSTILE_BODIES.items():
        with subtests.test(name):
            response = user.post("/v1/commitments", raw=body, headers={"content-type": "application/json"})
            assert response.status == 422, response.body[:300]
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json["code"] == "validation_error"
    assert user.get("/v1/balance").json["version"] == 0


def test_regression_identity_is_decided_before_a_hostile_body_is_read(
    user: Client, anonymous: Client, subtests: pytest.Subtests
) -> None:
    """Before: the body was parsed first, and its 500 answered a caller with no right to be there."""
    for name, body in HOSTILE_BODIES.items():
        with subtests.test(name):
            for path in ("/v1/admin/batches", f"/v1/admin/accounts/{user.sub}/entries"):
                response = user.post(path, raw=body, headers={"content-type": "application/json"})
                assert (response.status, response.json["code"]) == (403, "forbidden"), response.body[:300]
            for path in ("/v1/admin/batches", "/v1/commitments"):
                response = anonymous.post(path, raw=body, headers={"content-type": "application/json"})
                assert (response.status, response.json["code"]) == (401, "unauthorized"), response.body[:300]
