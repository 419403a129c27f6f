"""The core routes end to end: real handlers on moto, tables built from template.yaml."""

from __future__ import annotations

from typing import Any

from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent

ENTRY_KEYS = {
    "entry_id",
    "user_id",
    "seq",
    "type",
    "amount",
    "balance_after",
    "counterparty",
    "related_id",
    "metadata",
    "created_at",
    "reverses",
}


def fund(admin: Client, user_id: str, amount: int) -> None:
    response = admin.post(
        f"/v1/admin/accounts/{user_id}/entries", {"type": "grant", "amount": amount, "reason": "test funds"}
    )
    assert response.status == 201, response.json


def test_packages_list_the_catalog(user: Client) -> None:
    response = user.get("/v1/packages")
    assert response.status == 200
    packages = response.json["packages"]
    assert packages and all(set(p) == {"package_id", "name", "tokens", "price"} for p in packages)
    assert all(set(p["price"]) == {"amount", "currency"} and isinstance(p["price"]["amount"], int) for p in packages)


def test_an_unknown_user_has_balance_zero_version_zero(user: Client) -> None:
    response = user.get("/v1/balance")
    assert response.status == 200
    assert response.json == {"user_id": user.sub, "balance": 0, "version": 0, "updated_at": None}


def test_balance_with_required_adds_sufficient_and_shortfall(user: Client, admin: Client) -> None:
    fund(admin, user.sub, 40)
    short = user.get("/v1/balance", required=50).json
    assert (short["balance"], short["sufficient"], short["shortfall"]) == (40, False, 10)
    enough = user.get("/v1/balance", required=40).json
    assert (enough["sufficient"], enough["shortfall"]) == (True, 0)


def test_a_commitment_debits_and_answers_entry_and_balance(user: Client, admin: Client, aws: dict[str, Any]) -> None:
    fund(admin, user.sub, 100)
    response = user.post("/v1/commitments", {"prediction_id": "p-9", "amount": 30, "metadata": {"ui": "web"}})
    assert response.status == 201
    assert response.headers["content-type"] == "application/json"
    entry = response.json["entry"]
    assert set(entry) >= ENTRY_KEYS
    assert entry["type"] == "commitment" and entry["amount"] == -30 and entry["balance_after"] == 70
    assert entry["counterparty"] == "prediction:p-9" and entry["related_id"] == "p-9"
    assert entry["metadata"] == {"ui": "web"} and entry["seq"] == 2 and entry["reverses"] is None
    assert entry["created_at"].endswith("Z")
    assert response.json["balance"] == 70
    assert user.get("/v1/balance").json["balance"] == 70
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 70, "version": 2, "entries": 2}


def test_insufficient_balance_is_409_with_balance_and_shortfall(user: Client, admin: Client, aws: Any) -> None:
    fund(admin, user.sub, 10)
    response = user.post("/v1/commitments", {"prediction_id": "p-1", "amount": 25})
    assert response.status == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["code"] == "insufficient_balance"
    assert (response.json["balance"], response.json["shortfall"]) == (10, 15)
    assert {"type", "title", "status", "detail", "code"} <= set(response.json) and response.json["status"] == 409
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 10


def test_a_replay_returns_the_original_answer_with_the_replayed_header(user: Client, admin: Client, aws: Any) -> None:
    fund(admin, user.sub, 100)
    body = {"prediction_id": "p-1", "amount": 30}
    first = user.post("/v1/commitments", body, key="order-1")
    again = user.post("/v1/commitments", body, key="order-1")
    assert (first.status, again.status) == (201, 201)
    assert again.json == first.json
    assert again.headers.get("idempotent-replayed") == "true"
    assert "idempotent-replayed" not in first.headers
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 70, "version": 2, "entries": 2}


def test_a_key_reused_with_another_body_is_422(user: Client, admin: Client, aws: Any) -> None:
    fund(admin, user.sub, 100)
    assert user.post("/v1/commitments", {"prediction_id": "p-1", "amount": 30}, key="k").status == 201
    reused = user.post("/v1/commitments", {"prediction_id": "p-1", "amount": 31}, key="k")
    assert reused.status == 422 and reused.json["code"] == "idempotency_key_reused"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 70


def test_keys_are_scoped_to_the_caller(api: Any, admin: Client) -> None:
    alice, bob = Client(api, "alice-scoped"), Client(api, "bob-scoped")
    fund(admin, "alice-scoped", 50)
    fund(admin, "bob-scoped", 50)
    body = {"prediction_id": "p-1", "amount": 5}
    assert alice.post("/v1/commitments", body, key="same").status == 201
    second = bob.post("/v1/commitments", body, key="same")
    assert second.status == 201 and "idempotent-replayed" not in second.headers
    assert bob.get("/v1/balance").json["balance"] == 45


def test_if_match_writes_on_the_current_version_and_412s_on_an_old_one(user: Client, admin: Client, aws: Any) -> None:
    fund(admin, user.sub, 100)
    version = user.get("/v1/balance").json["version"]
    ok = user.post("/v1/commitments", {"prediction_id": "p", "amount": 5}, headers={"if-match": f'"{version}"'})
    assert ok.status == 201 and ok.json["entry"]["seq"] == version + 1
    stale = user.post("/v1/commitments", {"prediction_id": "p", "amount": 5}, headers={"if-match": f'"{version}"'})
    assert stale.status == 412 and stale.json["code"] == "version_conflict"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 95


def test_history_pages_newest_first_and_filters_by_type(user: Client, admin: Client) -> None:
    fund(admin, user.sub, 100)
    for amount in (1, 2, 3, 4):
        assert user.post("/v1/commitments", {"prediction_id": "p", "amount": amount}).status == 201
    first = user.get("/v1/transactions", limit=3)
    assert first.status == 200
    assert [e["seq"] for e in first.json["items"]] == [5, 4, 3]
    rest = user.get("/v1/transactions", limit=3, cursor=first.json["next_cursor"])
    assert [e["seq"] for e in rest.json["items"]] == [2, 1] and rest.json["next_cursor"] is None
    grants = user.get("/v1/transactions", type="grant")
    assert [e["type"] for e in grants.json["items"]] == ["grant"]
    default = user.get("/v1/transactions")
    assert len(default.json["items"]) == 5 and default.json["next_cursor"] is None


def test_a_filtered_history_pages_through_sparse_matches(user: Client, admin: Client) -> None:
    for _ in range(3):
        fund(admin, user.sub, 10)
        for _ in range(3):
            assert user.post("/v1/commitments", {"prediction_id": "p", "amount": 1}).status == 201
    seen: list[int] = []
    cursor = None
    for _ in range(10):
        query = {"type": "grant", "limit": 1} | ({"cursor": cursor} if cursor else {})
        page = user.get("/v1/transactions", **query).json
        seen += [e["seq"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [9, 5, 1]


def test_one_entry_by_id_and_another_users_entry_is_404(api: Any, user: Client, admin: Client) -> None:
    fund(admin, user.sub, 10)
    entry = user.get("/v1/transactions").json["items"][0]
    mine = user.get(f"/v1/transactions/{entry['entry_id']}")
    assert mine.status == 200 and mine.json == entry
    stranger = Client(api, "someone-else")
    theirs = stranger.get(f"/v1/transactions/{entry['entry_id']}")
    assert theirs.status == 404 and theirs.json["code"] == "not_found"
    assert user.get("/v1/transactions/01NOSUCHENTRY").status == 404


def test_admin_entries_record_who_and_why(user: Client, admin: Client, aws: Any) -> None:
    path = f"/v1/admin/accounts/{user.sub}/entries"
    grant = admin.post(path, {"type": "grant", "amount": 50, "reason": "launch promo", "metadata": {"t": "1"}})
    assert grant.status == 201
    assert grant.json["entry"]["actor"] == admin.sub and grant.json["entry"]["reason"] == "launch promo"
    payout = admin.post(path, {"type": "payout", "amount": 20, "reason": "won", "related_id": "p-7"})
    assert payout.json["entry"]["counterparty"] == "prediction:p-7"
    down = admin.post(path, {"type": "adjustment", "amount": -60, "reason": "correction"})
    assert down.status == 201 and down.json["balance"] == 10
    too_far = admin.post(path, {"type": "adjustment", "amount": -11, "reason": "correction"})
    assert too_far.status == 409 and too_far.json["code"] == "insufficient_balance"
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub) == {"balance": 10, "version": 3, "entries": 3}


def test_nobody_reads_or_writes_without_claims(anonymous: Client) -> None:
    for response in (
        anonymous.get("/v1/balance"),
        anonymous.get("/v1/transactions"),
        anonymous.get("/v1/packages"),
        anonymous.post("/v1/commitments", {"prediction_id": "p", "amount": 1}),
        anonymous.post("/v1/commitments", raw="{not json"),
        anonymous.post("/v1/admin/accounts/u1/entries", {"type": "grant", "amount": 1, "reason": "x"}),
    ):
        assert response.status == 401 and response.json["code"] == "unauthorized"


def test_non_admins_get_403_on_admin_routes_even_with_a_bad_body(user: Client, api: Any) -> None:
    for body in ({"type": "grant", "amount": 1, "reason": "x"}, {"amount": "nope"}):
        response = user.post(f"/v1/admin/accounts/{user.sub}/entries", body)
        assert response.status == 403 and response.json["code"] == "forbidden"
    support = Client(api, "support-1", ["support"])
    assert support.post("/v1/admin/accounts/x1/entries", {"type": "grant", "amount": 1, "reason": "x"}).status == 403


def test_an_unknown_route_is_a_404_problem(user: Client) -> None:
    assert user.get("/v1/nothing-here").status == 404
