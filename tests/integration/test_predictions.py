"""Predictions end to end: close, settle (resolved or cancelled) in the background, exactly once.

Real handlers behind the template's routes; the settlement queue played by `infra.queues`
(as the local stack plays it). Runs on moto and on DynamoDB Local.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from infra.api import LocalApi
from infra.queues import QueuePump
from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent
from tokenledger.bootstrap import Settings, build_predictions
from tokenledger.service.ports import LedgerRepository


def pid() -> str:
    return f"p-{uuid.uuid4().hex[:10]}"


def funded_users(admin: Client, count: int, amount: int = 100) -> list[Client]:
    users = [Client(admin.api, f"u-{uuid.uuid4().hex[:12]}") for _ in range(count)]
    operations = [{"user_id": u.sub, "type": "grant", "amount": amount} for u in users]
    for start in range(0, len(operations), 49):
        response = admin.post("/v1/admin/batches", {"operations": operations[start : start + 49], "reason": "funds"})
        assert response.status == 201, response.json
    return users


def commit(user: Client, prediction_id: str, amount: int) -> Any:
    return user.post("/v1/commitments", {"prediction_id": prediction_id, "amount": amount})


def settle(admin: Client, prediction_id: str, body: dict[str, Any], **kwargs: Any) -> Any:
    return admin.post(f"/v1/admin/predictions/{prediction_id}/settlement", body, **kwargs)


def settlement(admin: Client, prediction_id: str) -> Any:
    return admin.get(f"/v1/admin/predictions/{prediction_id}/settlement")


def drain(api: LocalApi) -> int:
    return QueuePump(STACK, api.pool).drain()


# ---------------------------------------------------------------------- close
def test_after_the_close_a_commitment_is_refused_and_moves_nothing(admin: Client, aws: Any) -> None:
    (alice,) = funded_users(admin, 1)
    prediction_id = pid()
    before = alice.post("/v1/commitments", {"prediction_id": prediction_id, "amount": 30}, key="before-close")
    assert before.status == 201

    closed = admin.post(f"/v1/admin/predictions/{prediction_id}/close", None, key=None)
    assert closed.status == 200, closed.json
    assert closed.json["prediction_id"] == prediction_id and closed.json["closed_at"]
    again = admin.post(f"/v1/admin/predictions/{prediction_id}/close", None, key=None)
    assert again.json["closed_at"] == closed.json["closed_at"]  # the first close stands

    late = commit(alice, prediction_id, 10)
    assert late.status == 409 and late.json["code"] == "prediction_closed"
    assert late.headers["content-type"] == "application/problem+json"
    # With If-Match (one round trip) too; and the retry of a commitment made before the close replays.
    late_if_match = alice.post(
        "/v1/commitments", {"prediction_id": prediction_id, "amount": 10}, headers={"If-Match": '"2"'}
    )
    assert late_if_match.status == 409 and late_if_match.json["code"] == "prediction_closed"
    replay = alice.post("/v1/commitments", {"prediction_id": prediction_id, "amount": 30}, key="before-close")
    assert replay.status == 201 and replay.headers.get("idempotent-replayed") == "true"
    assert assert_account_consistent(aws["dynamodb"], STACK, alice.sub) == {"balance": 70, "version": 2, "entries": 2}
    # Other predictions stay open.
    assert commit(alice, pid(), 5).status == 201


def test_a_reversal_of_a_commitment_is_refused_once_the_prediction_is_closed(admin: Client, aws: Any) -> None:
    alice, bob = funded_users(admin, 2)
    prediction_id = pid()
    first = commit(alice, prediction_id, 20).json["entry"]
    second = commit(bob, prediction_id, 30).json["entry"]
    undone = admin.post(f"/v1/admin/entries/{first['entry_id']}/reversal", {"reason": "mistake"})
    assert undone.status == 201
    admin.post(f"/v1/admin/predictions/{prediction_id}/close", None, key=None)

    refused = admin.post(f"/v1/admin/entries/{second['entry_id']}/reversal", {"reason": "too late"})
    assert refused.status == 409 and refused.json["code"] == "prediction_closed"
    # The reversal before the close left the pool: a cancellation refunds bob only.
    assert settle(admin, prediction_id, {"reason": "void", "outcome": "cancelled"}).json["payouts_total"] == 30
    assert drain(admin.api) >= 1
    assert assert_account_consistent(aws["dynamodb"], STACK, alice.sub)["balance"] == 100
    assert assert_account_consistent(aws["dynamodb"], STACK, bob.sub) == {"balance": 100, "version": 3, "entries": 3}


# ---------------------------------------------------------------------- settle
def test_a_resolved_prediction_pays_out_in_the_background_once(admin: Client, aws: Any) -> None:
    users = funded_users(admin, 3)
    prediction_id = pid()
    for user, amount in zip(users, (10, 20, 30), strict=True):
        assert commit(user, prediction_id, amount).status == 201
    assert settlement(admin, prediction_id).status == 404

    payouts = [{"user_id": users[0].sub, "amount": 45}, {"user_id": "u-never-seen", "amount": 15}]
    body = {"reason": "YES won", "outcome": "resolved", "payouts": payouts}
    accepted = settle(admin, prediction_id, body, key="settle-1")
    assert accepted.status == 202, accepted.json
    answer = accepted.json
    assert answer["status"] == "pending" and answer["settlement_id"].startswith("stl_")
    assert (answer["taken_in"], answer["payouts_total"], answer["paid_total"]) == (60, 60, 0)
    assert commit(users[1], prediction_id, 1).json["code"] == "prediction_closed"  # settling closed it

    drain(admin.api)
    done = settlement(admin, prediction_id)
    assert done.status == 200
    assert done.json["status"] == "completed" and done.json["completed_at"]
    assert (done.json["paid_total"], done.json["entries_written"]) == (60, 2)
    assert assert_account_consistent(aws["dynamodb"], STACK, users[0].sub)["balance"] == 135
    assert assert_account_consistent(aws["dynamodb"], STACK, "u-never-seen") == {
        "balance": 15,
        "version": 1,
        "entries": 1,
    }

    # The same request again (same key, or another key) answers the same settlement and pays nothing more.
    replay = settle(admin, prediction_id, body, key="settle-1")
    assert replay.status == 202 and replay.headers.get("idempotent-replayed") == "true"
    assert settle(admin, prediction_id, body).json["settlement_id"] == answer["settlement_id"]
    # A new key with the same plan stores its own answer: its retry is a replay of that answer.
    second = settle(admin, prediction_id, body, key="settle-2")
    assert second.status == 202 and second.json["settlement_id"] == answer["settlement_id"]
    again = settle(admin, prediction_id, body, key="settle-2")
    assert again.status == 202 and again.headers.get("idempotent-replayed") == "true"
    assert again.json == second.json
    other = settle(admin, prediction_id, {**body, "payouts": payouts[:1]})
    assert other.status == 409 and other.json["code"] == "already_settled"
    reused = settle(admin, prediction_id, {**body, "reason": "other"}, key="settle-1")
    assert reused.status == 422 and reused.json["code"] == "idempotency_key_reused"
    drain(admin.api)
    assert assert_account_consistent(aws["dynamodb"], STACK, users[0].sub)["balance"] == 135


def test_payouts_beyond_the_pool_are_refused_unless_the_house_covers_them(admin: Client, aws: Any) -> None:
    (alice,) = funded_users(admin, 1)
    prediction_id = pid()
    commit(alice, prediction_id, 40)
    body = {"reason": "r", "outcome": "resolved", "payouts": [{"user_id": alice.sub, "amount": 50}]}
    refused = settle(admin, prediction_id, body)
    assert refused.status == 409 and refused.json["code"] == "pool_exceeded"
    assert (refused.json["taken_in"], refused.json["shortfall"]) == (40, 10)
    assert settlement(admin, prediction_id).status == 404  # nothing recorded: a corrected plan may follow
    assert settle(admin, prediction_id, {**body, "house_contribution": 9}).json["code"] == "pool_exceeded"
    covered = settle(admin, prediction_id, {**body, "house_contribution": 10})
    assert covered.status == 202 and covered.json["house_contribution"] == 10
    drain(admin.api)
    assert assert_account_consistent(aws["dynamodb"], STACK, alice.sub)["balance"] == 110

    # The reconciliation reports the settled prediction's totals ...
    report = admin.api.pool.invoke("ReconcileFunction", {})
    (row,) = [r for r in report["settled_predictions"] if r["prediction_id"] == prediction_id]
    assert (row["taken_in"], row["paid_out"], row["refunded"], row["house_contribution"]) == (40, 50, 0, 10)
    assert row["overpaid"] is False and report["healthy"] is True
    # ... and flags one that paid out more than it took in plus the house's contribution.
    extra = {"type": "payout", "amount": 1, "related_id": prediction_id, "reason": "hand-made payout"}
    assert admin.post(f"/v1/admin/accounts/{alice.sub}/entries", extra).status == 201
    report = admin.api.pool.invoke("ReconcileFunction", {})
    (row,) = [r for r in report["settled_predictions"] if r["prediction_id"] == prediction_id]
    assert row["overpaid"] is True and report["healthy"] is False
    assert [f["kind"] for f in report["inconsistencies"]] == ["prediction_overpaid"]


def test_a_cancelled_prediction_refunds_each_user_net_of_reversals(admin: Client, aws: Any) -> None:
    alice, bob, carol = funded_users(admin, 3)
    prediction_id = pid()
    commit(alice, prediction_id, 10)
    commit(alice, prediction_id, 15)
    reversed_entry = commit(bob, prediction_id, 20).json["entry"]
    commit(carol, pid(), 5)  # another prediction: untouched
    admin.post(f"/v1/admin/entries/{reversed_entry['entry_id']}/reversal", {"reason": "duplicate"})

    accepted = settle(admin, prediction_id, {"reason": "void", "outcome": "cancelled"})
    assert accepted.status == 202 and accepted.json["payouts_total"] == 25
    drain(admin.api)
    assert settlement(admin, prediction_id).json["status"] == "completed"
    assert assert_account_consistent(aws["dynamodb"], STACK, alice.sub) == {"balance": 100, "version": 4, "entries": 4}
    assert assert_account_consistent(aws["dynamodb"], STACK, bob.sub) == {"balance": 100, "version": 3, "entries": 3}
    assert assert_account_consistent(aws["dynamodb"], STACK, carol.sub)["balance"] == 95


def test_a_user_naming_a_prediction_cannot_reach_its_keys(admin: Client, aws: Any) -> None:
    (mallory,) = funded_users(admin, 1)
    prediction_id = pid()
    # Commitments to look-alike ids are other predictions; the pool of prediction_id stays empty.
    for lookalike in (f"{prediction_id}:closed", f"{prediction_id}.x", "settlement"):
        assert commit(mallory, lookalike, 1).status == 201
    assert mallory.post("/v1/commitments", {"prediction_id": f"{prediction_id}|closed", "amount": 1}).status == 422
    body = {"reason": "r", "outcome": "resolved", "payouts": [{"user_id": mallory.sub, "amount": 1}]}
    assert settle(admin, prediction_id, body).json["code"] == "pool_exceeded"


def test_settlement_routes_refuse_outsiders_and_hostile_bodies(admin: Client, user: Client, anonymous: Client) -> None:
    prediction_id = pid()
    ok = {"reason": "r", "outcome": "resolved", "payouts": [{"user_id": "u-1", "amount": 1}]}
    assert anonymous.post(f"/v1/admin/predictions/{prediction_id}/close", None).status == 401
    assert user.post(f"/v1/admin/predictions/{prediction_id}/close", None).status == 403
    assert settle(user, prediction_id, ok).status == 403
    assert settlement(user, prediction_id).status == 403
    assert settle(anonymous, prediction_id, ok).status == 401
    bad_bodies = [
        {**ok, "payouts": [{"user_id": "u-1", "amount": 1.0}]},
        {**ok, "payouts": [{"user_id": "u-1", "amount": True}]},
        {**ok, "payouts": [{"user_id": "u-1", "amount": 0}]},
        {**ok, "payouts": [{"user_id": "u-1", "amount": 10**30}]},
        {**ok, "payouts": [{"user_id": "u-1", "amount": 1}, {"user_id": "u-1", "amount": 2}]},
        {**ok, "payouts": [{"user_id": "not an id", "amount": 1}]},
        {**ok, "payouts": []},
        {**ok, "outcome": "won"},
        {**ok, "house_contribution": -1},
        {"reason": "r", "outcome": "cancelled", "payouts": ok["payouts"]},
        {**ok, "extra": 1},
        {**ok, "payouts": [{"user_id": f"u-{i}", "amount": 1} for i in range(100_001)]},
    ]
    for body in bad_bodies:
        response = settle(admin, prediction_id, body)
        assert response.status == 422, (body if len(str(body)) < 300 else "100,001 payouts", response.json)
        assert response.headers["content-type"] == "application/problem+json"
    assert settle(admin, prediction_id, ok, key=None).status == 422  # Idempotency-Key required
    assert admin.post("/v1/admin/predictions/a%7Cb/close", None).status in (404, 422)
    assert admin.post(f"/v1/admin/predictions/{prediction_id}/settlement", raw="[" * 5000).status == 422
    assert settlement(admin, prediction_id).status == 404  # nothing was recorded


# ---------------------------------------------------------------------- crash and race
class SimulatedCrash(Exception):
    pass


class CrashAfterCommits:
    """The real repository, but the worker dies right after its n-th transaction commits."""

    def __init__(self, repo: LedgerRepository, commits_before_crash: int) -> None:
        self.repo = repo
        self.commits_left = commits_before_crash

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)

    def commit(self, *args: Any, **kwargs: Any) -> None:
        self.repo.commit(*args, **kwargs)
        self.commits_left -= 1
        if self.commits_left == 0:
            raise SimulatedCrash("the worker's Lambda timed out after the write, before recording progress")


def test_a_worker_crash_between_chunks_resumes_and_pays_nobody_twice(
    admin: Client, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tokenledger.service.predictions.SETTLEMENT_CHUNK_MAX", 2)  # small chunks, same code
    prediction_id = pid()
    winners = [f"u-{uuid.uuid4().hex[:12]}" for _ in range(5)]  # 3 chunks
    body = {
        "reason": "house-funded prize",
        "outcome": "resolved",
        "payouts": [{"user_id": u, "amount": 1 + i} for i, u in enumerate(winners)],
        "house_contribution": sum(1 + i for i in range(len(winners))),
    }
    accepted = settle(admin, prediction_id, body)
    assert accepted.status == 202 and accepted.json["chunks_total"] == 3
    settlement_id = accepted.json["settlement_id"]

    crashing = build_predictions(Settings.from_env())
    crashing.admin.ledger.repo = CrashAfterCommits(crashing.admin.ledger.repo, commits_before_crash=2)
    with pytest.raises(SimulatedCrash):
        crashing.work(prediction_id, settlement_id, remaining_ms=lambda: 60_000)
    midway = settlement(admin, prediction_id).json
    assert (midway["status"], midway["chunks_done"]) == ("running", 1)  # chunk 1 written, not recorded

    drain(admin.api)  # the message comes back: chunk 1 replays from its record, chunk 2 is written
    done = settlement(admin, prediction_id).json
    assert (done["status"], done["chunks_done"], done["paid_total"]) == ("completed", 3, body["house_contribution"])
    assert done["entries_written"] == 5
    for i, user_id in enumerate(winners):
        assert assert_account_consistent(aws["dynamodb"], STACK, user_id) == {
            "balance": 1 + i,
            "version": 1,
            "entries": 1,
        }


def test_two_settlement_requests_racing_settle_once(admin: Client, aws: Any) -> None:
    alice, bob = funded_users(admin, 2)
    prediction_id = pid()
    commit(alice, prediction_id, 50)
    commit(bob, prediction_id, 50)
    plans = [
        {"reason": "A", "outcome": "resolved", "payouts": [{"user_id": alice.sub, "amount": 100}]},
        {"reason": "B", "outcome": "resolved", "payouts": [{"user_id": bob.sub, "amount": 100}]},
        {"reason": "A", "outcome": "resolved", "payouts": [{"user_id": alice.sub, "amount": 100}]},
    ]
    answers: list[Any] = [None] * len(plans)
    start = threading.Barrier(len(plans))

    def send(index: int) -> None:
        start.wait()
        answers[index] = settle(admin, prediction_id, plans[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(plans))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    accepted = [a for a in answers if a.status == 202]
    refused = [a for a in answers if a.status != 202]
    assert {a.json["settlement_id"] for a in accepted} == {accepted[0].json["settlement_id"]}
    assert all(a.status == 409 and a.json["code"] == "already_settled" for a in refused), [a.json for a in refused]
    assert len(refused) in (1, 2)
    drain(admin.api)
    winner = alice if accepted[0].json["reason"] == "A" else bob
    loser = bob if winner is alice else alice
    assert assert_account_consistent(aws["dynamodb"], STACK, winner.sub)["balance"] == 150
    assert assert_account_consistent(aws["dynamodb"], STACK, loser.sub)["balance"] == 50
