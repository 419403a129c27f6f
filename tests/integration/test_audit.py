"""The audit function on moto: one account's audit and repair, and the latest report."""

from __future__ import annotations

from typing import Any

import pytest

from infra.api import LocalApi
from tests.conftest import STACK, Client
from tests.integration.test_reconcile import (
    TABLES,
    account_key,
    build_chain,
    commit,
    corrupt_update,
    entry_key,
    fund,
    grant,
    new_user,
    reconcile,
    seed_accounts,
    spend,
)
from tests.invariants import assert_account_consistent, chain_of

AUDIT_FIELDS = {
    "user_id",
    "stored_balance",
    "computed_balance",
    "version",
    "entries_checked",
    "consistent",
    "inconsistencies",
}


def audit_path(user_id: str) -> str:
    return f"/v1/admin/accounts/{user_id}/audit"


def repair_path(user_id: str) -> str:
    return f"/v1/admin/accounts/{user_id}/repair"


def repair_records(dynamodb: Any, user_id: str) -> list[dict[str, Any]]:
    items = dynamodb.scan(TableName=TABLES["IdempotencyTable"])["Items"]
    return [i for i in items if i["pk"]["S"].startswith(f"repair|{user_id}|")]


def test_a_healthy_account_audits_consistent(api: LocalApi, admin: Client, aws: Any) -> None:
    alice = new_user()
    fund(admin, alice, 80)
    spend(api, alice, 30)

    response = admin.get(audit_path(alice))

    assert response.status == 200
    assert response.json == {
        "user_id": alice,
        "stored_balance": 50,
        "computed_balance": 50,
        "version": 2,
        "entries_checked": 2,
        "consistent": True,
        "inconsistencies": [],
    }


def test_an_unknown_account_audits_as_empty_and_consistent(admin: Client) -> None:
    response = admin.get(audit_path(new_user()))
    assert response.status == 200
    assert response.json["consistent"] is True
    assert (response.json["stored_balance"], response.json["version"], response.json["entries_checked"]) == (0, 0, 0)


def test_a_drifted_balance_is_found_then_repaired_from_the_chain(api: LocalApi, admin: Client, aws: Any) -> None:
    db = aws["dynamodb"]
    alice = new_user()
    fund(admin, alice, 80)
    spend(api, alice, 30)
    corrupt_update(db, "AccountsTable", account_key(alice), "SET balance = :b", {":b": {"N": "75"}})
    entries_before = chain_of(db, STACK, alice)

    audit = admin.get(audit_path(alice))
    assert audit.status == 200 and audit.json.keys() == AUDIT_FIELDS
    assert audit.json["consistent"] is False
    assert (audit.json["stored_balance"], audit.json["computed_balance"]) == (75, 50)
    assert [i["kind"] for i in audit.json["inconsistencies"]] == ["balance_mismatch"]

    repair = admin.post(repair_path(alice), {"reason": "ticket OPS-7: balance drift"}, key=None)

    assert repair.status == 200, repair.json
    assert repair.json["before"] == {"balance": 75, "version": 2}
    assert repair.json["after"] == {"balance": 50, "version": 2}
    assert repair.json["repaired"] is True
    assert assert_account_consistent(db, STACK, alice) == {"balance": 50, "version": 2, "entries": 2}
    assert chain_of(db, STACK, alice) == entries_before, "repair must never touch an entry"
    (record,) = repair_records(db, alice)
    assert record["pk"]["S"] == repair.json["audit_record"]
    assert record["actor"]["S"] == admin.sub and record["reason"]["S"] == "ticket OPS-7: balance drift"
    assert record["before"]["M"]["balance"]["N"] == "75" and record["after"]["M"]["balance"]["N"] == "50"
    assert "expires_at" not in record, "repair records are kept forever"

    assert admin.get(audit_path(alice)).json["consistent"] is True
    again = admin.post(repair_path(alice), {}, key=None)
    assert again.status == 200
    assert again.json["repaired"] is False and again.json["before"] == again.json["after"] == {
        "balance": 50,
        "version": 2,
    }
    assert len(repair_records(db, alice)) == 1
    assert reconcile(api)["healthy"] is True


def test_an_account_behind_its_chain_is_moved_forward(api: LocalApi, aws: Any, admin: Client) -> None:
    db = aws["dynamodb"]
    bob = new_user()
    seed_accounts(db, [build_chain(bob, [grant(40), commit(15), grant(3)])])
    corrupt_update(
        db, "AccountsTable", account_key(bob), "SET version = :v, balance = :b", {":v": {"N": "1"}, ":b": {"N": "40"}}
    )
    assert "version_mismatch" in {i["kind"] for i in admin.get(audit_path(bob)).json["inconsistencies"]}

    repair = admin.post(repair_path(bob), {"reason": "behind"}, key=None)

    assert repair.status == 200 and repair.json["after"] == {"balance": 28, "version": 3}
    assert_account_consistent(db, STACK, bob)


def test_an_account_lost_with_its_entries_kept_is_rebuilt(aws: Any, admin: Client) -> None:
    db = aws["dynamodb"]
    carol = new_user()
    seed_accounts(db, [build_chain(carol, [grant(12), commit(2)])])
    db.delete_item(TableName=TABLES["AccountsTable"], Key=account_key(carol))
    assert [i["kind"] for i in admin.get(audit_path(carol)).json["inconsistencies"]] == ["orphan_entries"]

    repair = admin.post(repair_path(carol), {"reason": "restore"}, key=None)

    assert repair.status == 200 and repair.json["before"] == {"balance": 0, "version": 0}
    assert repair.json["after"] == {"balance": 10, "version": 2}
    assert_account_consistent(db, STACK, carol)


def test_a_broken_chain_is_not_repaired(api: LocalApi, aws: Any, admin: Client) -> None:
    db = aws["dynamodb"]
    dave = new_user()
    seed_accounts(db, [build_chain(dave, [grant(30), commit(10)])])
    corrupt_update(db, "EntriesTable", entry_key(dave, 2), "SET balance_after = :b", {":b": {"N": "25"}})

    repair = admin.post(repair_path(dave), {"reason": "try"}, key=None)

    assert repair.status == 409
    assert repair.headers["content-type"] == "application/problem+json"
    assert repair.json["code"] == "chain_inconsistent"
    # The bent balance_after is also no longer what seq 2's hash covers.
    assert [i["kind"] for i in repair.json["inconsistencies"]] == ["chain_break", "hash_mismatch"]
    account = db.get_item(TableName=TABLES["AccountsTable"], Key=account_key(dave))["Item"]
    assert (account["balance"]["N"], account["version"]["N"]) == ("20", "2")
    assert repair_records(db, dave) == []


def test_history_rewritten_with_every_sum_agreeing_is_caught_by_the_audit_and_never_repaired(
    api: LocalApi, admin: Client, aws: Any
) -> None:
    db = aws["dynamodb"]
    erin = new_user()
    fund(admin, erin, 50)
    spend(api, erin, 20)
    fund(admin, erin, 5)
    assert admin.get(audit_path(erin)).json["consistent"] is True
    # Someone with write access to the tables turns the 20-token commitment into 10 and carries
    # the difference through every later balance_after and the account: every sum agrees.
    corrupt_update(
        db,
        "EntriesTable",
        entry_key(erin, 2),
        "SET amount = :a, balance_after = :b",
        {":a": {"N": "-10"}, ":b": {"N": "40"}},
    )
    corrupt_update(db, "EntriesTable", entry_key(erin, 3), "SET balance_after = :b", {":b": {"N": "45"}})
    corrupt_update(db, "AccountsTable", account_key(erin), "SET balance = :b", {":b": {"N": "45"}})

    audit = admin.get(audit_path(erin))
    repair = admin.post(repair_path(erin), {"reason": "make it agree"}, key=None)

    assert audit.status == 200 and audit.json["consistent"] is False
    assert (audit.json["stored_balance"], audit.json["computed_balance"]) == (45, 45)
    assert audit.json["inconsistencies"] == [
        {"kind": "hash_mismatch", "detail": "seq 2: stored hash does not match its content or chain"}
    ]
    assert repair.status == 409 and repair.json["code"] == "chain_inconsistent"
    assert [i["kind"] for i in repair.json["inconsistencies"]] == ["hash_mismatch"]
    assert repair_records(db, erin) == []


def test_repair_without_a_body_is_refused_as_validation(admin: Client) -> None:
    response = admin.post(repair_path(new_user()), raw="", key=None)
    assert response.status == 422 and response.json["code"] == "validation_error"


def test_the_latest_report_is_404_before_the_first_run_then_the_last_one(api: LocalApi, admin: Client) -> None:
    missing = admin.get("/v1/admin/reports/latest")
    assert missing.status == 404 and missing.json["code"] == "not_found"
    assert missing.headers["content-type"] == "application/problem+json"
    reconcile(api)
    second = reconcile(api)
    latest = admin.get("/v1/admin/reports/latest")
    assert latest.status == 200 and latest.json == second


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/admin/accounts/u-1/audit"),
        ("POST", "/v1/admin/accounts/u-1/repair"),
        ("GET", "/v1/admin/reports/latest"),
    ],
)
def test_only_admins_reach_the_audit_routes(api: LocalApi, method: str, path: str) -> None:
    for client, status, code in ((Client(api, None), 401, "unauthorized"), (Client(api, "u-1"), 403, "forbidden")):
        response = client.get(path) if method == "GET" else client.post(path, {"reason": "x"}, key=None)
        assert response.status == status
        assert response.json["code"] == code
        assert response.headers["content-type"] == "application/problem+json"


def test_a_malformed_user_id_is_a_validation_error(admin: Client) -> None:
    response = admin.get(audit_path("bad%20id!"))
    assert response.status == 422 and response.json["code"] == "validation_error"
