"""The usual way, for comparison: Powertools' idempotency decorator around read-then-write.

This is what most teams would build: `@idempotent` with a `DynamoDBPersistenceLayer` on its
own table (created by the benchmark only, never part of the template), wrapped around a
handler that reads the account(s) strongly consistently and then writes the new balance and
the entry in one conditional `TransactWriteItems`. The item shapes are the ledger's own
(`entry_to_item`), so item sizes, and therefore capacity units, compare like for like.

Powertools adds a `PutItem` of an "in progress" record before the handler and an
`UpdateItem` with the response after it; a replay is answered from the failed conditional
`PutItem` (ReturnValuesOnConditionCheckFailure=ALL_OLD). It is not exactly-once: an error
after the transaction deletes the in-progress record and a client retry writes again
(DESIGN.md, invariant 4). It is here for its cost, not as an alternative.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)

from infra.template import LOCAL_STACK_NAME
from tokenledger.adapters.dynamodb import account_from_item, entry_to_item
from tokenledger.adapters.ids import new_ulid, utc_now_iso
from tokenledger.domain.model import Account, Entry, EntryType

TABLE_NAME = f"{LOCAL_STACK_NAME}-BenchPowertoolsIdempotency"
Handler = Callable[[dict[str, Any], Any], dict[str, Any]]


def create_table(client: Any) -> str:
    """The decorator's table, as the Powertools docs declare it (pk `id`, TTL `expiration`)."""
    existing = client.list_tables().get("TableNames", [])
    if TABLE_NAME not in existing:
        client.create_table(
            TableName=TABLE_NAME,
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            BillingMode="PAY_PER_REQUEST",
        )
        client.get_waiter("table_exists").wait(TableName=TABLE_NAME, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    return TABLE_NAME


def build_handler(client: Any, *, accounts_table: str, entries_table: str) -> Handler:
    """An API Gateway v2 handler: body `{operations: [{user_id?, type, amount, related_id?}]}`.

    One operation is a commitment or a purchase; several are a batch (one BatchGetItem, one
    transaction). `{"reverse": entry_id}` reverses an entry (GSI query, read, transaction
    with a conditional mark on the original entry).
    """
    persistence = DynamoDBPersistenceLayer(table_name=TABLE_NAME, boto3_client=client)
    config = IdempotencyConfig(
        event_key_jmespath='[requestContext.authorizer.jwt.claims.sub, headers."idempotency-key"]',
        payload_validation_jmespath="body",
        raise_on_no_idempotency_key=True,
    )

    def read_accounts(user_ids: list[str]) -> dict[str, Account]:
        if len(user_ids) == 1:
            item = client.get_item(
                TableName=accounts_table, Key={"user_id": {"S": user_ids[0]}}, ConsistentRead=True
            ).get("Item")
            found = [item] if item else []
        else:
            response = client.batch_get_item(
                RequestItems={
                    accounts_table: {"Keys": [{"user_id": {"S": u}} for u in user_ids], "ConsistentRead": True}
                }
            )
            found = response["Responses"][accounts_table]
        accounts = {u: Account(user_id=u) for u in user_ids}
        for item in found:
            account = account_from_item(item)
            accounts[account.user_id] = account
        return accounts

    def account_update(before: Account, balance: int, version: int, now: str) -> dict[str, Any]:
        condition = "version = :ev" if before.version else "attribute_not_exists(user_id) OR version = :ev"
        return {
            "Update": {
                "TableName": accounts_table,
                "Key": {"user_id": {"S": before.user_id}},
                "UpdateExpression": "SET balance = :b, version = :v, updated_at = :now, "
                "created_at = if_not_exists(created_at, :now)",
                "ConditionExpression": condition,
                "ExpressionAttributeValues": {
                    ":b": {"N": str(balance)},
                    ":v": {"N": str(version)},
                    ":now": {"S": now},
                    ":ev": {"N": str(before.version)},
                },
            }
        }

    def reverse(entry_id: str, actor: str) -> dict[str, Any]:
        found = client.query(
            TableName=entries_table,
            IndexName="by-entry-id",
            KeyConditionExpression="entry_id = :e",
            ExpressionAttributeValues={":e": {"S": entry_id}},
            Limit=1,
        )["Items"]
        original = found[0]
        user_id = original["user_id"]["S"]
        before = read_accounts([user_id])[user_id]
        amount = -int(original["amount"]["N"])
        now = utc_now_iso()
        entry = Entry(
            entry_id=new_ulid(),
            user_id=user_id,
            seq=before.version + 1,
            type=EntryType.REVERSAL,
            amount=amount,
            balance_after=before.balance + amount,
            counterparty=original["counterparty"]["S"],
            related_id=original.get("related_id", {}).get("S"),
            metadata={},
            created_at=now,
            reverses=entry_id,
            reason="bench",
            actor=actor,
        )
        client.transact_write_items(
            TransactItems=[
                account_update(before, entry.balance_after, entry.seq, now),
                {
                    "Put": {
                        "TableName": entries_table,
                        "Item": entry_to_item(entry),
                        "ConditionExpression": "attribute_not_exists(user_id)",
                    }
                },
                {
                    "Update": {
                        "TableName": entries_table,
                        "Key": {"user_id": original["user_id"], "seq": original["seq"]},
                        "UpdateExpression": "SET reversed_by = :r",
                        "ConditionExpression": "attribute_not_exists(reversed_by)",
                        "ExpressionAttributeValues": {":r": {"S": entry.entry_id}},
                    }
                },
            ]
        )
        return {"entry": entry.to_api(), "balance": entry.balance_after}

    def apply(operations: list[dict[str, Any]], caller: str) -> dict[str, Any]:
        user_ids = list(dict.fromkeys(op.get("user_id", caller) for op in operations))
        accounts = read_accounts(user_ids)
        now = utc_now_iso()
        items: list[dict[str, Any]] = []
        entries: list[Entry] = []
        state = {u: (a.balance, a.version) for u, a in accounts.items()}
        for op in operations:
            user_id = op.get("user_id", caller)
            balance, version = state[user_id]
            amount = int(op["amount"])
            if balance + amount < 0:
                return {"error": "insufficient_balance", "balance": balance}
            related = op.get("related_id")
            entry = Entry(
                entry_id=new_ulid(),
                user_id=user_id,
                seq=version + 1,
                type=EntryType(op["type"]),
                amount=amount,
                balance_after=balance + amount,
                counterparty=op.get("counterparty", f"prediction:{related}" if related else "admin"),
                related_id=related,
                metadata={},
                created_at=now,
            )
            state[user_id] = (entry.balance_after, entry.seq)
            entries.append(entry)
            items.append(
                {
                    "Put": {
                        "TableName": entries_table,
                        "Item": entry_to_item(entry),
                        "ConditionExpression": "attribute_not_exists(user_id)",
                    }
                }
            )
        for user_id, (balance, version) in state.items():
            items.append(account_update(accounts[user_id], balance, version, now))
        client.transact_write_items(TransactItems=items)
        return {"entries": [e.to_api() for e in entries], "balances": {u: b for u, (b, _) in state.items()}}

    @idempotent(persistence_store=persistence, config=config)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        caller = event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"]
        body = json.loads(event["body"])
        result = reverse(body["reverse"], caller) if "reverse" in body else apply(body["operations"], caller)
        status = 409 if "error" in result else 201
        return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": json.dumps(result)}

    return handler
