"""Balances at a moment and statements, end to end (handlers, template's index, both engines)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from infra.api import LocalApi
from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent
from tokenledger.adapters.dynamodb import entry_from_item, entry_to_item
from tokenledger.domain.chain import GENESIS_HASH, entry_hash
from tokenledger.domain.model import Entry, EntryType
from tokenledger.service import statements
from tokenledger.service.statements import verify_statement


def _days_from_now(days: int) -> str:
    moment = datetime.now(UTC).replace(microsecond=0) + timedelta(days=days)
    return moment.isoformat().replace("+00:00", "Z")


EARLY = _days_from_now(-100)  # a statement spans at most 366 days
LATE = _days_from_now(100)


def grant(admin: Client, user_id: str, amount: int, reason: str = "t") -> dict[str, Any]:
    body = {"type": "grant", "amount": amount, "reason": reason}
    response = admin.post(f"/v1/admin/accounts/{user_id}/entries", body)
    assert response.status == 201, response.json
    entry: dict[str, Any] = response.json["entry"]
    return entry


def commit(user: Client, amount: int) -> dict[str, Any]:
    response = user.post("/v1/commitments", {"prediction_id": "p-1", "amount": amount, "metadata": {"k": "=1+2"}})
    assert response.status == 201, response.json
    entry: dict[str, Any] = response.json["entry"]
    return entry


@pytest.fixture
def history(user: Client, admin: Client) -> list[dict[str, Any]]:
    """grant 100, commit 30, grant 5, commit 1: created_at strictly increasing."""
    entries = [grant(admin, user.sub, 100), commit(user, 30), grant(admin, user.sub, 5, "=cmd|x"), commit(user, 1)]
    assert [e["created_at"] for e in entries] == sorted({e["created_at"] for e in entries})
    return entries


def test_balance_at_a_moment_is_the_balance_after_the_last_entry_at_or_before_it(
    user: Client, history: list[dict[str, Any]]
) -> None:
    def at(moment: str) -> dict[str, Any]:
        response = user.get("/v1/balance", at=moment)
        assert response.status == 200, response.json
        return response.json

    assert at(EARLY) == {"user_id": user.sub, "balance": 0, "version": 0, "at": EARLY[:-1] + ".000Z"}
    for entry in history:
        assert at(entry["created_at"]) == {
            "user_id": user.sub,
            "balance": entry["balance_after"],
            "version": entry["seq"],
            "at": entry["created_at"],
        }
    assert (at(LATE)["balance"], at(LATE)["version"]) == (74, 4)
    # Any offset names the same instant; a fraction finer than milliseconds is floored.
    second = history[1]["created_at"]
    same = second[:-1] + "999+00:00"
    assert at(same)["version"] == 2
    assert user.get("/v1/balance", at=LATE, required=80).json["shortfall"] == 6


def test_a_statement_lists_the_period_oldest_first_with_its_balances_and_verifies(
    user: Client, history: list[dict[str, Any]], aws: dict[str, Any]
) -> None:
    response = user.get("/v1/statements", **{"from": history[1]["created_at"], "to": history[3]["created_at"]})

    assert response.status == 200, response.json
    body = response.json
    assert response.headers["content-type"] == "application/json"
    assert [e["seq"] for e in body["entries"]] == [2, 3]
    assert (body["opening_balance"], body["closing_balance"]) == (100, 75)
    assert body["totals_by_type"]["commitment"] == -30 and body["totals_by_type"]["grant"] == 5
    assert body["opening_hash"] == history[0]["hash"] and body["head_hash"] == history[2]["hash"]
    assert body["entries"] == [{**h, "hash": h["hash"]} for h in history[1:3]]
    assert verify_statement(body) == []
    whole = user.get("/v1/statements", **{"from": EARLY, "to": LATE}).json
    assert (whole["opening_hash"], whole["head_hash"], len(whole["entries"])) == (GENESIS_HASH, history[3]["hash"], 4)
    assert verify_statement(whole) == []
    empty = user.get("/v1/statements", **{"from": EARLY, "to": _days_from_now(-1)}).json
    assert (empty["entries"], empty["opening_balance"], empty["closing_balance"]) == ([], 0, 0)
    assert assert_account_consistent(aws["dynamodb"], STACK, user.sub)["balance"] == 74


def test_a_statement_as_csv_has_a_header_and_one_row_per_entry_with_formulas_defused(
    user: Client, history: list[dict[str, Any]]
) -> None:
    response = user.api.request(
        "GET",
        "/v1/statements",
        claims=user.claims,
        query={"from": EARLY, "to": LATE},
        headers={"accept": "text/csv"},
    )
    assert response.status == 200
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.body)))
    assert [int(r["seq"]) for r in rows] == [1, 2, 3, 4]
    assert [int(r["balance_after"]) for r in rows] == [e["balance_after"] for e in history]
    assert rows[2]["reason"] == "'=cmd|x" and rows[3]["hash"] == history[3]["hash"]
    assert rows[3]["metadata"] == '{"k":"=1+2"}'


def test_an_admin_reads_any_users_statement_and_a_user_cannot(
    api: LocalApi, user: Client, admin: Client, anonymous: Client, history: list[dict[str, Any]]
) -> None:
    path = f"/v1/admin/accounts/{user.sub}/statement"
    response = admin.get(path, **{"from": EARLY, "to": LATE})
    assert response.status == 200 and [e["seq"] for e in response.json["entries"]] == [1, 2, 3, 4]
    assert verify_statement(response.json) == []
    assert user.get(path, **{"from": EARLY, "to": LATE}).status == 403
    assert anonymous.get(path, **{"from": EARLY, "to": LATE}).status == 401
    assert anonymous.get("/v1/statements", **{"from": EARLY, "to": LATE}).status == 401
    # The user route only ever reads the caller: another user's statement is theirs, empty.
    other = Client(api, "u-someone-else")
    assert other.get("/v1/statements", **{"from": EARLY, "to": LATE}).json["entries"] == []


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"at": "yesterday"}, "validation_error"),
        ({"at": "2026-11-01"}, "validation_error"),
        ({"at": "2026-11-01T00:00:00"}, "validation_error"),
        ({"at": "2026-13-01T00:00:00Z"}, "validation_error"),
        ({"at": "9" * 5000}, "validation_error"),
        ({"at": "2026-11-01T00:00:00Z\n"}, "validation_error"),
    ],
)
def test_a_bad_moment_is_422_problem_json(user: Client, query: dict[str, str], code: str) -> None:
    response = user.get("/v1/balance", **query)
    assert response.status == 422 and response.json["code"] == code
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ({"from": LATE, "to": EARLY}, "validation_error"),
        ({"from": EARLY, "to": EARLY}, "validation_error"),
        ({"from": EARLY}, "validation_error"),
        ({"from": "x", "to": LATE}, "validation_error"),
        ({"from": "0001-01-01T00:00:00+01:00", "to": LATE}, "validation_error"),
        ({"from": EARLY, "to": LATE + "x" * 100}, "validation_error"),
        ({"from": "2026-01-01T00:00:00Z", "to": "2027-01-03T00:00:00Z"}, "statement_too_large"),
    ],
)
def test_a_bad_or_too_long_period_is_422_problem_json(
    user: Client, admin: Client, query: dict[str, str], code: str
) -> None:
    for client, path in ((user, "/v1/statements"), (admin, f"/v1/admin/accounts/{user.sub}/statement")):
        response = client.get(path, **query)
        assert response.status == 422 and response.json["code"] == code, (path, response.json)
        assert response.headers["content-type"] == "application/problem+json"


def test_too_many_entries_for_one_statement_is_422_statement_too_large(
    user: Client, history: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(statements, "STATEMENT_ENTRIES_MAX", 3)
    response = user.get("/v1/statements", **{"from": EARLY, "to": LATE})
    assert response.status == 422 and response.json["code"] == "statement_too_large"
    assert user.get("/v1/statements", **{"from": history[1]["created_at"], "to": LATE}).status == 200


def test_a_rewrite_redone_with_fresh_hashes_passes_alone_but_not_against_the_digest(
    api: LocalApi, user: Client, admin: Client, history: list[dict[str, Any]], aws: dict[str, Any], tmp_path: Path
) -> None:
    from infra import cli
    from tests.integration.test_reconcile import BUCKET, TABLES, read_lines, reconcile, s3

    report = reconcile(api)
    digest = tmp_path / "digest.jsonl"
    digest.write_bytes(s3().get_object(Bucket=BUCKET, Key=report["snapshot_key"])["Body"].read())
    honest = tmp_path / "honest.json"
    honest.write_text(json.dumps(user.get("/v1/statements", **{"from": EARLY, "to": LATE}).json))
    assert {line["user_id"]: line["head_hash"] for line in read_lines(report["snapshot_key"])}[user.sub] == (
        history[-1]["hash"]
    )
    assert cli.main(["verify", str(honest)]) == cli.EXIT_OK
    assert cli.main(["verify", str(honest), "--digest", str(digest)]) == cli.EXIT_OK

    # Someone with write access turns the 30-token commitment into 20 and, knowing the encoding
    # (it is public), recomputes every later hash and the account's head: the chain verifies.
    db, prev, balance = aws["dynamodb"], history[0]["hash"], history[0]["balance_after"]
    for raw in history[1:]:
        amount = -20 if raw["seq"] == 2 else raw["amount"]
        balance += amount
        forged = replace(entry_from_item(entry_to_item_of(raw)), amount=amount, balance_after=balance, hash=None)
        forged = replace(forged, hash=entry_hash(forged, prev))
        db.put_item(TableName=TABLES["EntriesTable"], Item=entry_to_item(forged))
        prev = forged.hash
    db.update_item(
        TableName=TABLES["AccountsTable"],
        Key={"user_id": {"S": user.sub}},
        UpdateExpression="SET balance = :b, head_hash = :h",
        ExpressionAttributeValues={":b": {"N": str(balance)}, ":h": {"S": prev}},
    )
    assert admin.get(f"/v1/admin/accounts/{user.sub}/audit").json["consistent"] is True  # the chain alone: fooled
    rewritten = tmp_path / "rewritten.json"
    rewritten.write_text(json.dumps(user.get("/v1/statements", **{"from": EARLY, "to": LATE}).json))
    assert cli.main(["verify", str(rewritten)]) == cli.EXIT_OK
    assert cli.main(["verify", str(rewritten), "--digest", str(digest)]) == cli.EXIT_INCONSISTENT  # the digest: not


def test_verify_refuses_what_is_not_a_statement(tmp_path: Path) -> None:
    from infra import cli

    junk = tmp_path / "junk.json"
    junk.write_text("[1, 2]")
    assert cli.main(["verify", str(junk)]) == cli.EXIT_USAGE
    junk.write_text("{not json")
    assert cli.main(["verify", str(junk)]) == cli.EXIT_USAGE
    junk.write_text("{}")
    assert cli.main(["verify", str(junk)]) == cli.EXIT_INCONSISTENT


def entry_to_item_of(raw: dict[str, Any]) -> dict[str, Any]:
    """An API entry back to its table item (the fields the hash covers)."""
    entry = Entry(
        entry_id=raw["entry_id"],
        user_id=raw["user_id"],
        seq=raw["seq"],
        type=EntryType(raw["type"]),
        amount=raw["amount"],
        balance_after=raw["balance_after"],
        counterparty=raw["counterparty"],
        related_id=raw["related_id"],
        metadata=raw["metadata"],
        created_at=raw["created_at"],
        reverses=raw["reverses"],
        reason=raw.get("reason"),
        actor=raw.get("actor"),
        unrecovered=raw.get("unrecovered"),
        hash=raw["hash"],
    )
    return entry_to_item(entry)
