"""Cost per operation: round trips and capacity units of each operation, ours and the usual way.

Every operation runs through the real handler in its own `Environment`; the counted
figures are every DynamoDB call the handler made while serving that one request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from bench import baseline_powertools
from bench.counting import Tally
from bench.harness import STACK, WEBHOOK_SECRET, World, idem_key, new_id
from infra.api import ApiResponse
from infra.lambdas import FakeContext
from infra.stripe_events import WEBHOOK_PATH, checkout_completed_event, local_catalog, signed_delivery
from tokenledger.adapters.dynamodb import CLIENT_CONFIG

BATCH_SIZE = 10
HISTORY_ENTRIES = 25
SEED_TOKENS = 10_000

# The floor per operation. "DESIGN.md" rows are the budget table; "derived" rows apply its
# rule (one consistent read per account set, one transaction, 2 WCU per transactional item).
FLOORS: dict[str, dict[str, Any]] = {
    "balance_read": {"round_trips": 1, "write_units": 0, "source": "DESIGN.md"},
    "history_page": {"round_trips": 1, "write_units": 0, "source": "DESIGN.md"},
    # A commitment also puts its prediction's stake item and checks the closed marker in the same
    # transaction (#15, docs/admin.md): 2 more write units, and the ConditionCheck priced like one (2).
    "commitment": {"round_trips": 2, "write_units": 10, "source": "DESIGN.md + stake put + closed check"},
    "commitment_if_match": {"round_trips": 1, "write_units": 10, "source": "DESIGN.md + stake put + closed check"},
    "commitment_if_match_cold": {"round_trips": 2, "write_units": 10, "source": "derived: version not cached"},
    "replay": {"round_trips": "1-2", "write_units": 0, "source": "DESIGN.md"},
    "replay_if_match": {"round_trips": "1-2", "write_units": 0, "source": "DESIGN.md"},
    "admin_grant": {"round_trips": 2, "write_units": 6, "source": "DESIGN.md (credit)"},
    "stripe_purchase": {
        "round_trips": 2,
        "write_units": 8,
        "source": "derived: 1 BatchGetItem (event record + account) + 1 transaction of 4 items (+ the event record)",
    },
    "stripe_redelivery": {"round_trips": 1, "write_units": 0, "source": "derived: the BatchGetItem finds the record"},
    "batch_10": {
        "round_trips": 2,
        "write_units": 2 * (BATCH_SIZE + BATCH_SIZE + 1),
        "source": "derived: 1 BatchGetItem + 1 transaction of 10 accounts, 10 entries, 1 idempotency record",
    },
    "reversal": {
        "round_trips": 3,
        "write_units": 12,
        "source": "derived: find the entry (GSI query), read the account, 1 transaction of 4 items; "
        "reversing a commitment adds its stake item and the closed check (#15)",
    },
    "audit_entry": {"round_trips": "1 scan read per item", "write_units": 0, "source": "DESIGN.md"},
}


class Measured:
    def __init__(self) -> None:
        self.results: dict[str, dict[str, Any]] = {}
        self.pending: dict[str, str] = {}

    def add(self, name: str, tally: Tally, reply: ApiResponse | None, expected: int | None, note: str = "") -> None:
        summary = tally.summary()
        if reply is not None:
            summary["status"] = reply.status
            if expected is not None and reply.status != expected:
                summary["unexpected"] = f"expected {expected}, got {reply.status}: {str(reply.body)[:200]}"
        if note:
            summary["note"] = note
        self.results[name] = summary


# ---------------------------------------------------------------------- ours
def measure_ours(world: World) -> Measured:
    out = Measured()
    rec = world.recorder.record
    admin = new_id("admin")
    admin_env = world.environment_for("POST", "/v1/admin/accounts/x/entries")

    def grant(user_id: str, amount: int) -> ApiResponse:
        return world.call(
            admin_env,
            "POST",
            f"/v1/admin/accounts/{user_id}/entries",
            sub=admin,
            groups=["admin"],
            body={"type": "grant", "amount": amount, "reason": "bench seed"},
            headers={"idempotency-key": idem_key()},
        )

    user = new_id("u")
    grant(user, SEED_TOKENS)

    reads = world.environment_for("GET", "/v1/balance")
    with rec() as tally:
        reply = world.call(reads, "GET", "/v1/balance", sub=user)
    out.add("balance_read", tally, reply, 200)

    writes = world.environment_for("POST", "/v1/commitments")
    body = {"prediction_id": new_id("p"), "amount": 5}
    key = idem_key()
    with rec() as tally:
        first = world.call(writes, "POST", "/v1/commitments", sub=user, body=body, headers={"idempotency-key": key})
    out.add("commitment", tally, first, 201, "no If-Match: one consistent read, one transaction")
    commitment_entry = (first.json or {}).get("entry", {}).get("entry_id") if isinstance(first.json, dict) else None

    with rec() as tally:
        again = world.call(writes, "POST", "/v1/commitments", sub=user, body=body, headers={"idempotency-key": key})
    out.add("replay", tally, again, 201, "same key and body, no If-Match: the transaction is refused, nothing written")

    version = _version(world, reads, user)
    body = {"prediction_id": new_id("p"), "amount": 5}
    key = idem_key()
    headers = {"idempotency-key": key, "if-match": f'"{version}"'}
    with rec() as tally:
        reply = world.call(writes, "POST", "/v1/commitments", sub=user, body=body, headers=headers)
    out.add("commitment_if_match", tally, reply, 201, "warm: this environment has seen (user, version)")

    with rec() as tally:
        reply = world.call(writes, "POST", "/v1/commitments", sub=user, body=body, headers=headers)
    out.add("replay_if_match", tally, reply, 201, "same request, If-Match now stale")

    cold = world.environment_for("POST", "/v1/commitments")
    version = _version(world, reads, user)
    headers = {"idempotency-key": idem_key(), "if-match": f'"{version}"'}
    body = {"prediction_id": new_id("p"), "amount": 5}
    with rec() as tally:
        reply = world.call(cold, "POST", "/v1/commitments", sub=user, body=body, headers=headers)
    out.add("commitment_if_match_cold", tally, reply, 201, "a new environment: version not cached, so it reads")

    grant_user = new_id("u")
    with rec() as tally:
        reply = grant(grant_user, 100)
    out.add("admin_grant", tally, reply, 201, "an admin credit on a new account")

    while _version(world, reads, user) < HISTORY_ENTRIES:
        grant(user, 1)
    with rec() as tally:
        reply = world.call(reads, "GET", "/v1/transactions", sub=user)
    out.add("history_page", tally, reply, 200, "20 newest entries (Query Limit 21, eventually consistent)")

    _stripe(world, out)
    _batch(world, out, admin)
    _reversal(world, out, admin, commitment_entry)
    _audit(world, out)
    return out


def _version(world: World, reads: Any, user: str) -> int:
    reply = world.call(reads, "GET", "/v1/balance", sub=user)
    return int(reply.json["version"])


def _stripe(world: World, out: Measured) -> None:
    path = WEBHOOK_PATH
    if not world.has_route("POST", path):
        out.pending["stripe_purchase"] = "no POST /v1/webhooks/stripe in template.yaml yet"
        return
    env = world.environment_for("POST", path)
    starter = next(package for package in local_catalog() if package["package_id"] == "starter")
    payload, headers = signed_delivery(checkout_completed_event(new_id("u"), starter), WEBHOOK_SECRET)
    with world.recorder.record() as tally:
        reply = world.call(env, "POST", path, raw_body=payload, headers=headers)
    out.add("stripe_purchase", tally, reply, 200, "checkout.session.completed, first delivery (secret cached after)")
    with world.recorder.record() as tally:
        reply = world.call(env, "POST", path, raw_body=payload, headers=headers)
    out.add("stripe_redelivery", tally, reply, 200, "the same event delivered again")


def _batch(world: World, out: Measured, admin: str) -> None:
    path = "/v1/admin/batches"
    if not world.has_route("POST", path):
        out.pending["batch_10"] = "no POST /v1/admin/batches in template.yaml yet"
        return
    env = world.environment_for("POST", path)
    prediction = new_id("p")
    operations = [
        {"user_id": new_id("u"), "type": "payout", "amount": 10, "related_id": prediction} for _ in range(BATCH_SIZE)
    ]
    with world.recorder.record() as tally:
        reply = world.call(
            env,
            "POST",
            path,
            sub=admin,
            groups=["admin"],
            body={"operations": operations, "reason": "bench payout"},
            headers={"idempotency-key": idem_key()},
        )
    out.add("batch_10", tally, reply, 201, f"{BATCH_SIZE} payouts to {BATCH_SIZE} accounts")


def _reversal(world: World, out: Measured, admin: str, entry_id: str | None) -> None:
    route_path = "/v1/admin/entries/x/reversal"
    if not world.has_route("POST", route_path):
        out.pending["reversal"] = "no POST /v1/admin/entries/{entry_id}/reversal in template.yaml yet"
        return
    if entry_id is None:
        out.pending["reversal"] = "no commitment entry to reverse (the commitment failed)"
        return
    env = world.environment_for("POST", route_path)
    with world.recorder.record() as tally:
        reply = world.call(
            env,
            "POST",
            f"/v1/admin/entries/{entry_id}/reversal",
            sub=admin,
            groups=["admin"],
            body={"reason": "bench reversal"},
            headers={"idempotency-key": idem_key()},
        )
    out.add("reversal", tally, reply, 201, "reverses the commitment measured above")


def _audit(world: World, out: Measured) -> None:
    from bench import audit

    figure = audit.cost_per_entry(world)
    if isinstance(figure, str):
        out.pending["audit_entry"] = figure
        return
    out.results["audit_entry"] = figure


# ---------------------------------------------------------------------- the usual way
def measure_baseline(world: World) -> Measured:
    import boto3

    out = Measured()
    rec = world.recorder.record
    client = boto3.client("dynamodb", config=CLIENT_CONFIG)  # from the hooked default session
    baseline_powertools.create_table(world.oracle)
    tables = STACK.table_names()
    handler = baseline_powertools.build_handler(
        client, accounts_table=tables["AccountsTable"], entries_table=tables["EntriesTable"]
    )
    context = FakeContext("BaselinePowertools", 10)
    user = new_id("u")

    def invoke(body: dict[str, Any], key: str, sub: str = user) -> ApiResponse:
        event = {
            "version": "2.0",
            "headers": {"idempotency-key": key, "content-type": "application/json"},
            "requestContext": {"authorizer": {"jwt": {"claims": {"sub": sub}}}},
            "body": json.dumps(body),
        }
        raw = handler(event, context)
        return ApiResponse(raw["statusCode"], raw.get("headers", {}), raw["body"], json.loads(raw["body"]))

    invoke({"operations": [{"type": "grant", "amount": SEED_TOKENS}]}, idem_key())

    def plain(name: str, call: Callable[[], Any], note: str) -> None:
        with rec() as tally:
            call()
        out.add(name, tally, None, None, note)

    plain(
        "balance_read",
        lambda: client.get_item(TableName=tables["AccountsTable"], Key={"user_id": {"S": user}}, ConsistentRead=True),
        "the same single GetItem",
    )

    body = {"operations": [{"type": "commitment", "amount": -5, "related_id": new_id("p")}]}
    key = idem_key()
    with rec() as tally:
        first = invoke(body, key)
    out.add("commitment", tally, first, 201, "Powertools put + read + transaction + Powertools update")
    entry_id = first.json["entries"][0]["entry_id"] if first.status == 201 else None
    with rec() as tally:
        reply = invoke(body, key)
    out.add("replay", tally, reply, 201, "answered by the refused Powertools PutItem (ALL_OLD)")

    body = {"operations": [{"type": "commitment", "amount": -5, "related_id": new_id("p")}]}
    with rec() as tally:
        reply = invoke(body, idem_key())
    out.add("commitment_if_match", tally, reply, 201, "no If-Match in the usual way: same as a commitment")

    for _ in range(HISTORY_ENTRIES):
        invoke({"operations": [{"type": "grant", "amount": 1}]}, idem_key())
    plain(
        "history_page",
        lambda: client.query(
            TableName=tables["EntriesTable"],
            KeyConditionExpression="user_id = :u",
            ExpressionAttributeValues={":u": {"S": user}},
            ScanIndexForward=False,
            Limit=21,
        ),
        "the same single Query",
    )

    body = {"operations": [{"type": "purchase", "amount": 100, "counterparty": "stripe", "related_id": "pi_bench"}]}
    with rec() as tally:
        reply = invoke(body, "evt_" + idem_key(), sub=new_id("u"))
    out.add("stripe_purchase", tally, reply, 201, "keyed on the Stripe event id; same shape as a credit")

    prediction = new_id("p")
    operations = [
        {"user_id": new_id("u"), "type": "payout", "amount": 10, "related_id": prediction} for _ in range(BATCH_SIZE)
    ]
    with rec() as tally:
        reply = invoke({"operations": operations}, idem_key())
    out.add("batch_10", tally, reply, 201, "one BatchGetItem, one transaction, inside the decorator")

    if entry_id is not None:
        with rec() as tally:
            reply = invoke({"reverse": entry_id}, idem_key())
        out.add("reversal", tally, reply, 201, "GSI query, read, transaction marking the original entry")
    return out
