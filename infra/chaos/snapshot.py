"""The ledger as it stands after a run, read straight from the tables (faults off), for the checks."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from infra.api import LocalApi
from infra.chaos.model import Op
from infra.chaos.workload import Features
from infra.template import Stack
from tokenledger.adapters.attributes import plain_item


def _scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page.get("Items", []))
    return items


class Snapshot:
    """The accounts, entries and idempotency records after the run, and the operations sent."""

    def __init__(self, stack: Stack, dynamodb: Any, ops: list[Op], features: Features, api: LocalApi) -> None:
        self.stack = stack
        self.dynamodb = dynamodb
        self.ops = ops
        self.features = features
        self.api = api
        tables = stack.table_names()
        self.accounts = {a["user_id"]: a for a in map(plain_item, _scan(dynamodb, tables["AccountsTable"]))}
        self.entries = [plain_item(i) for i in _scan(dynamodb, tables["EntriesTable"])]
        self.idempotency = [plain_item(i) for i in _scan(dynamodb, tables["IdempotencyTable"])]
        self.by_id = {e["entry_id"]: e for e in self.entries}

    def users(self) -> set[str]:
        return set(self.accounts) | {e["user_id"] for e in self.entries}

    def _entries_by_key(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in self.entries:
            key = (entry.get("metadata") or {}).get("chaos_op")
            if key:
                found[key].append(entry)
        return found

    def _settled_predictions(self) -> set[str]:
        return {op.request.path.split("/")[4] for op in self.ops if op.kind == "settle" and op.ok}

    def _signed_up(self) -> set[str]:
        return {op.user_id for op in self.ops if op.kind == "signup"}
