"""GET /v1/admin/balances?user_ids=...: up to 100 users in one BatchGetItem (real handler on moto)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent
from tokenledger.service.admin import BALANCES_USERS_MAX

BALANCES = "/v1/admin/balances"


def grant(admin: Client, user_id: str, amount: int) -> None:
    response = admin.post(
        f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": amount, "reason": "test funds"}
    )
    assert response.status == 201, response.json


def test_balances_in_the_order_asked_with_unknown_users_as_zero(admin: Client, aws: Any) -> None:
    alice, bob, ghost = (f"u-{uuid.uuid4().hex[:12]}" for _ in range(3))
    grant(admin, alice, 30)
    grant(admin, alice, 5)
    grant(admin, bob, 7)

    response = admin.get(BALANCES, user_ids=f"{bob},{ghost}, {alice}")

    assert response.status == 200
    assert response.json == {
        "balances": [
            {"user_id": bob, "balance": 7, "version": 1},
            {"user_id": ghost, "balance": 0, "version": 0},
            {"user_id": alice, "balance": 35, "version": 2},
        ],
        "total": 42,
    }
    for user_id in (alice, bob, ghost):
        assert_account_consistent(aws["dynamodb"], STACK, user_id)


def test_a_repeated_id_is_counted_once(admin: Client) -> None:
    user_id = f"u-{uuid.uuid4().hex[:12]}"
    grant(admin, user_id, 9)
    response = admin.get(BALANCES, user_ids=f"{user_id},{user_id}")
    assert response.json == {"balances": [{"user_id": user_id, "balance": 9, "version": 1}], "total": 9}


def test_a_hundred_users_in_one_request(admin: Client, aws: Any) -> None:
    users = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(BALANCES_USERS_MAX)]
    grant(admin, users[-1], 3)
    response = admin.get(BALANCES, user_ids=",".join(users))
    assert response.status == 200
    assert [row["user_id"] for row in response.json["balances"]] == users
    assert response.json["total"] == 3


def test_more_than_a_hundred_users_or_bad_ids_are_validation_errors(admin: Client) -> None:
    over = ",".join(f"u{i}" for i in range(BALANCES_USERS_MAX + 1))
    for query in ({"user_ids": over}, {"user_ids": ""}, {"user_ids": "a,,b"}, {"user_ids": "a,b c"}, {}):
        response = admin.get(BALANCES, **query)
        assert (response.status, response.json["code"]) == (422, "validation_error"), query
    assert admin.get(BALANCES, user_ids="u-" + "x" * 20_000).status == 422


def test_balances_are_for_admins_only(user: Client, anonymous: Client) -> None:
    assert (user.get(BALANCES, user_ids=user.sub).status, user.get(BALANCES, user_ids="a").json["code"]) == (
        403,
        "forbidden",
    )
    assert anonymous.get(BALANCES, user_ids="a").status == 401
