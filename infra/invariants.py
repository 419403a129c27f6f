"""Ledger invariants checked straight on the tables, independent of the code under test.

Shared by the tests, the chaos workload and the benchmarks. A broken invariant raises
`InvariantBroken`, never a bare `assert`: `python -O` strips asserts, and a check that
vanishes under -O would let every invariant "hold".
"""

from __future__ import annotations

from typing import Any

from infra.template import Stack


class InvariantBroken(Exception):
    """A ledger invariant does not hold: a bug, never an expected outcome."""


def require(condition: object, message: str) -> None:
    """Raise `InvariantBroken(message)` unless `condition` holds (survives `python -O`)."""
    if not condition:
        raise InvariantBroken(message)


def chain_of(dynamodb: Any, stack: Stack, user_id: str) -> list[dict[str, int]]:
    names = {k: v["TableName"] for k, v in stack.table_definitions().items()}
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {
        "TableName": names["EntriesTable"],
        "KeyConditionExpression": "user_id = :u",
        "ExpressionAttributeValues": {":u": {"S": user_id}},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return [
        {"seq": int(i["seq"]["N"]), "amount": int(i["amount"]["N"]), "balance_after": int(i["balance_after"]["N"])}
        for i in items
    ]


def assert_account_consistent(dynamodb: Any, stack: Stack, user_id: str) -> dict[str, int]:
    """Seq 1..n without gaps, the chain holds, never negative, version = n, balance = last."""
    names = {k: v["TableName"] for k, v in stack.table_definitions().items()}
    chain = chain_of(dynamodb, stack, user_id)
    item = dynamodb.get_item(TableName=names["AccountsTable"], Key={"user_id": {"S": user_id}}, ConsistentRead=True)
    account = item.get("Item")
    balance = int(account["balance"]["N"]) if account else 0
    version = int(account["version"]["N"]) if account else 0
    require([e["seq"] for e in chain] == list(range(1, len(chain) + 1)), "seq must run 1..n without gaps")
    running = 0
    for entry in chain:
        running += entry["amount"]
        require(entry["balance_after"] == running, f"chain breaks at seq {entry['seq']}")
        require(entry["balance_after"] >= 0, f"negative balance at seq {entry['seq']}")
    require(version == len(chain), "version must equal the last seq")
    require(balance == running, "stored balance must equal the chain's")
    require(balance >= 0, "stored balance below zero")
    return {"balance": balance, "version": version, "entries": len(chain)}
