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
