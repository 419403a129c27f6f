"""Balance at a moment and statements against one user with 100,000 entries, on DynamoDB Local.

Seeds one user's chain (real hashes, `created_at` 60 s apart, so 100,000 entries span about
69 days) with BatchWriteItem, then times the reads through the real repository and counts
what DynamoDB bills: round trips and read units (`ReturnConsumedCapacity=TOTAL`, which
DynamoDB Local reports from item sizes). For comparison, the naive way: Query the user's
whole history and walk it.

    .venv/bin/python -m bench.statements [--entries 100000]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from infra.template import Stack

START = datetime(2026, 1, 1, tzinfo=UTC)
SPACING_S = 60
USER = "bench-statement-user"


class Counting:
    """A DynamoDB client that adds ReturnConsumedCapacity to reads and counts calls and units."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0
        self.read_units = 0.0

    def reset(self) -> None:
        self.calls, self.read_units = 0, 0.0

    def query(self, **kwargs: Any) -> Any:
        response = self._client.query(**kwargs, ReturnConsumedCapacity="TOTAL")
        self.calls += 1
        self.read_units += float(response.get("ConsumedCapacity", {}).get("CapacityUnits", 0))
        return response

    def get_item(self, **kwargs: Any) -> Any:
        response = self._client.get_item(**kwargs, ReturnConsumedCapacity="TOTAL")
        self.calls += 1
        self.read_units += float(response.get("ConsumedCapacity", {}).get("CapacityUnits", 0))
        return response


def at(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def seed(client: Any, tables: dict[str, str], entries: int) -> float:
    from tokenledger.adapters.dynamodb import entry_to_item
    from tokenledger.domain.model import Account, EntryDraft, EntryType, apply_drafts

    started = time.perf_counter()
    account = Account(user_id=USER)
    batch: list[dict[str, Any]] = []
    for seq in range(1, entries + 1):
        draft = (
            EntryDraft(type=EntryType.GRANT, amount=10, counterparty="admin", reason="bench", actor="bench")
            if seq % 3
            else EntryDraft(type=EntryType.COMMITMENT, amount=-5, counterparty="prediction:p", related_id="p")
        )
        account, written = apply_drafts(account, [draft], entry_ids=[f"e-{seq:08d}"], now=at((seq - 1) * SPACING_S))
        batch.append({"PutRequest": {"Item": entry_to_item(written[0])}})
        if len(batch) == 25 or seq == entries:
            request = {tables["EntriesTable"]: batch}
            while request:
                request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}
            batch = []
    client.put_item(
        TableName=tables["AccountsTable"],
        Item={
            "user_id": {"S": USER},
            "balance": {"N": str(account.balance)},
            "version": {"N": str(account.version)},
            "created_at": {"S": account.created_at or ""},
            "updated_at": {"S": account.updated_at or ""},
            "head_hash": {"S": account.head_hash or ""},
        },
    )
    return time.perf_counter() - started


def measure(counting: Counting, label: str, work: Any) -> dict[str, Any]:
    counting.reset()
    started = time.perf_counter()
    result = work()
    elapsed = time.perf_counter() - started
    return {
        "read": label,
        "round_trips": counting.calls,
        "read_units": round(counting.read_units, 1),
        "ms": round(elapsed * 1000, 1),
        "result": result,
    }


def run(entries: int) -> dict[str, Any]:
    from infra.invariants import entry_pages
    from infra.world import ENGINE_DYNAMODB_LOCAL, local_world
    from tokenledger.bootstrap import Settings, build_repository
    from tokenledger.service.statements import balance_at, statement, verify_statement

    stack = Stack()
    with local_world(stack, ENGINE_DYNAMODB_LOCAL) as world:
        client = world.dynamodb
        tables = stack.table_names()
        seconds = seed(client, tables, entries)
        counting = Counting(client)
        settings = Settings(
            accounts_table=tables["AccountsTable"],
            entries_table=tables["EntriesTable"],
            idempotency_table=tables["IdempotencyTable"],
        )
        repo = build_repository(settings, dynamodb=counting)
        middle = entries // 2
        rows = [
            measure(counting, "balance at T, before the first entry", lambda: balance_at(repo, USER, at(-1))),
            measure(
                counting,
                f"balance at T, entry {middle:,} of {entries:,}",
                lambda: balance_at(repo, USER, at((middle - 1) * SPACING_S + 30)),
            ),
            measure(counting, "balance at T, after the last entry", lambda: balance_at(repo, USER, at(entries * 61))),
        ]

        def one_statement() -> dict[str, Any]:
            body = statement(repo, USER, at((middle - 1) * SPACING_S), at((middle - 1 + 960) * SPACING_S))
            return {"entries": len(body["entries"]), "verifies": verify_statement(body) == []}

        rows.append(measure(counting, "statement of 16 hours (960 entries) mid-history", one_statement))

        def naive() -> dict[str, Any]:
            target, balance = at((middle - 1) * SPACING_S + 30), 0
            for page in entry_pages(counting, tables["EntriesTable"], USER):
                for item in page:
                    if item["created_at"]["S"] <= target:
                        balance = int(item["balance_after"]["N"])
            return {"balance": balance}

        rows.append(measure(counting, "naive: Query the whole history (for comparison)", naive))
        return {"entries": entries, "seed_seconds": round(seconds, 1), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    result = run(args.entries)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
