"""Ledger invariants checked straight on the tables, independent of the code under test.

Shared by the tests, the chaos workload and the benchmarks. A broken invariant raises
`InvariantBroken`, never a bare `assert`: `python -O` strips asserts, and a check that
vanishes under -O would let every invariant "hold".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from infra.template import Stack


class InvariantBroken(Exception):
    """A ledger invariant does not hold: a bug, never an expected outcome."""


def require(condition: object, message: str) -> None:
    """Raise `InvariantBroken(message)` unless `condition` holds (survives `python -O`)."""
    if not condition:
        raise InvariantBroken(message)


def entry_pages(dynamodb: Any, entries_table: str, user_id: str) -> Iterator[list[dict[str, Any]]]:
    """The user's entries as stored, page by page in seq order (strongly consistent Queries)."""
    kwargs: dict[str, Any] = {
        "TableName": entries_table,
        "KeyConditionExpression": "user_id = :u",
        "ExpressionAttributeValues": {":u": {"S": user_id}},
        "ConsistentRead": True,
    }
    while True:
        page = dynamodb.query(**kwargs)
        yield page["Items"]
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def chain_of(dynamodb: Any, stack: Stack, user_id: str) -> list[dict[str, int]]:
    names = stack.table_names()
    items = [item for page in entry_pages(dynamodb, names["EntriesTable"], user_id) for item in page]
    return [
        {"seq": int(i["seq"]["N"]), "amount": int(i["amount"]["N"]), "balance_after": int(i["balance_after"]["N"])}
        for i in items
    ]


def hash_chain_problem(dynamodb: Any, stack: Stack, user_id: str) -> str | None:
    """The first break of the user's hash chain (entries, then the account's head), or None.

    Entries without a hash (written before the chain) may only come first.
    """
    from tokenledger.adapters.dynamodb import entry_from_item
    from tokenledger.domain.chain import GENESIS_HASH, entry_hash

    names = stack.table_names()
    prev: str | None = None
    for page in entry_pages(dynamodb, names["EntriesTable"], user_id):
        for item in page:
            entry = entry_from_item(item)
            if entry.hash is None and prev is None:
                continue
            if entry.hash != entry_hash(entry, prev or GENESIS_HASH):
                return f"seq {entry.seq}: hash does not chain"
            prev = entry.hash
    account = dynamodb.get_item(TableName=names["AccountsTable"], Key={"user_id": {"S": user_id}}, ConsistentRead=True)
    head = (account.get("Item") or {}).get("head_hash", {}).get("S")
    if prev is not None and head is not None and head != prev:  # test seeds may leave the head out
        return "the account's head hash is not the last entry's hash"
    return None


def assert_account_consistent(dynamodb: Any, stack: Stack, user_id: str) -> dict[str, int]:
    """Seq 1..n without gaps, the chain holds, never negative, version = n, balance = last."""
    names = stack.table_names()
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
    broken = hash_chain_problem(dynamodb, stack, user_id)
    require(broken is None, f"hash chain: {broken}")
    return {"balance": balance, "version": version, "entries": len(chain)}
