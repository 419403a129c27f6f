"""The ledger repository on DynamoDB (low-level client, explicit options everywhere)."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.config import Config
from botocore.exceptions import ClientError

from tokenledger.adapters.attributes import attribute_value, plain_item
from tokenledger.domain.errors import InvariantViolation
from tokenledger.domain.model import Account, Entry, EntryType
from tokenledger.service.ports import (
    AccountWrite,
    EntryMark,
    Guard,
    IdempotencyClaim,
    StoredResponse,
    TransactionRefused,
)

CLIENT_CONFIG = Config(
    connect_timeout=2,
    read_timeout=5,
    retries={"mode": "standard", "max_attempts": 3},
)
BATCH_GET_KEYS_MAX = 100
BATCH_GET_ROUNDS_MAX = 8
HISTORY_QUERY_PAGES_MAX = 5
ENTRY_ID_INDEX = "by-entry-id"
RELATED_ID_INDEX = "by-related-id"
USER_CREATED_INDEX = "by-user-created"  # (user_id, created_at), projecting balance_after and hash

# Cancellation reasons that mean "nothing happened, try the same write again".
RETRYABLE_CANCELLATIONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})

AttributeMap = dict[str, dict[str, Any]]


def make_client(service: str = "dynamodb") -> Any:
    """A boto3 client honouring AWS_ENDPOINT_URL(_DYNAMODB) through botocore's own config."""
    import boto3

    return boto3.client(service, config=CLIENT_CONFIG)


# ---------------------------------------------------------------- attribute values
def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def account_from_item(item: AttributeMap) -> Account:
    return Account(
        user_id=item["user_id"]["S"],
        balance=int(item.get("balance", {"N": "0"})["N"]),
        version=int(item.get("version", {"N": "0"})["N"]),
        created_at=item.get("created_at", {}).get("S"),
        updated_at=item.get("updated_at", {}).get("S"),
        head_hash=item.get("head_hash", {}).get("S"),
    )


def entry_to_item(entry: Entry) -> AttributeMap:
    item: AttributeMap = {
        "user_id": _s(entry.user_id),
        "seq": _n(entry.seq),
        "entry_id": _s(entry.entry_id),
        "type": _s(str(entry.type)),
        "amount": _n(entry.amount),
        "balance_after": _n(entry.balance_after),
        "counterparty": _s(entry.counterparty),
        "metadata": {"M": {k: _s(v) for k, v in entry.metadata.items()}},
        "created_at": _s(entry.created_at),
    }
    optional = {
        "related_id": entry.related_id,
        "reverses": entry.reverses,
        "reason": entry.reason,
        "actor": entry.actor,
        "hash": entry.hash,
    }
    for name, value in optional.items():
        if value is not None:
            item[name] = _s(value)
    if entry.unrecovered is not None:
        item["unrecovered"] = _n(entry.unrecovered)
    return item


def entry_from_item(item: AttributeMap) -> Entry:
    def opt(name: str) -> str | None:
        return item[name]["S"] if name in item else None

    return Entry(
        entry_id=item["entry_id"]["S"],
        user_id=item["user_id"]["S"],
        seq=int(item["seq"]["N"]),
        type=EntryType(item["type"]["S"]),
        amount=int(item["amount"]["N"]),
        balance_after=int(item["balance_after"]["N"]),
        counterparty=item["counterparty"]["S"],
        related_id=opt("related_id"),
        metadata={k: v["S"] for k, v in item.get("metadata", {"M": {}})["M"].items()},
        created_at=item["created_at"]["S"],
        reverses=opt("reverses"),
        reason=opt("reason"),
        actor=opt("actor"),
        unrecovered=int(item["unrecovered"]["N"]) if "unrecovered" in item else None,
        hash=opt("hash"),
    )


def stored_response_from_item(item: AttributeMap) -> StoredResponse:
    """An idempotency record's answer (a `status` that older records hold is not read: the route decides it)."""
    return StoredResponse(request_hash=item["request_hash"]["S"], body=json.loads(item["response"]["S"]))


def stored_response_item(pk: str, response: StoredResponse, *, expires_at: int | None) -> AttributeMap:
    """An idempotency record as an item (the ledger's writes and the checkout sessions share its shape)."""
    item: AttributeMap = {
        "pk": _s(pk),
        "request_hash": _s(response.request_hash),
        "response": _s(json.dumps(response.body, separators=(",", ":"))),
    }
    if expires_at is not None:
        item["expires_at"] = _n(expires_at)
    return item


def read_account(client: Any, accounts_table: str, user_id: str) -> Account | None:
    """One strongly consistent GetItem of an account (None if it was never opened)."""
    item = client.get_item(TableName=accounts_table, Key={"user_id": _s(user_id)}, ConsistentRead=True).get("Item")
    return account_from_item(item) if item else None


class DynamoLedgerRepository:
    """`LedgerRepository` on three tables: accounts, entries, idempotency records."""

    def __init__(
        self,
        client: Any,
        *,
        accounts_table: str,
        entries_table: str,
        idempotency_table: str,
        predictions_table: str | None = None,
    ) -> None:
        self.client = client
        self.accounts_table = accounts_table
        self.entries_table = entries_table
        self.idempotency_table = idempotency_table
        self.predictions_table = predictions_table

    # ---------------------------------------------------------------- reads
    def get_account(self, user_id: str) -> Account | None:
        return read_account(self.client, self.accounts_table, user_id)

    def get_accounts(self, user_ids: Sequence[str]) -> dict[str, Account]:
        """BatchGetItem in chunks of 100 (`batch_get`: unprocessed keys asked again with backoff)."""
        found: dict[str, Account] = {}
        unique = list(dict.fromkeys(user_ids))
        for start in range(0, len(unique), BATCH_GET_KEYS_MAX):
            keys = [{"user_id": _s(u)} for u in unique[start : start + BATCH_GET_KEYS_MAX]]
            for item in batch_get(self.client, self.accounts_table, keys):
                account = account_from_item(item)
                found[account.user_id] = account
        return found

    def get_idempotency(self, pk: str) -> StoredResponse | None:
        item = self.client.get_item(TableName=self.idempotency_table, Key={"pk": _s(pk)}, ConsistentRead=True).get(
            "Item"
        )
        return stored_response_from_item(item) if item and "request_hash" in item else None

    def get_guard(self, pk: str) -> dict[str, Any] | None:
        item: AttributeMap | None = self.client.get_item(
            TableName=self.idempotency_table, Key={"pk": _s(pk)}, ConsistentRead=True
        ).get("Item")
        return None if item is None else plain_item(item)

    def list_entries(
        self, user_id: str, *, before_seq: int | None, limit: int, entry_type: str | None
    ) -> tuple[list[Entry], int | None]:
        key_condition = "user_id = :u"
        values: AttributeMap = {":u": _s(user_id)}
        if before_seq is not None:
            key_condition += " AND seq < :s"
            values[":s"] = _n(before_seq)
        query: dict[str, Any] = {
            "TableName": self.entries_table,
            "KeyConditionExpression": key_condition,
            "ScanIndexForward": False,
            "Limit": limit + 1,
        }
        if entry_type is not None:
            query["FilterExpression"] = "#t = :t"
            query["ExpressionAttributeNames"] = {"#t": "type"}
            values[":t"] = _s(entry_type)
        query["ExpressionAttributeValues"] = values
        entries: list[Entry] = []
        for _ in range(HISTORY_QUERY_PAGES_MAX):
            response = self.client.query(**query)
            entries.extend(entry_from_item(item) for item in response.get("Items", []))
            last_key = response.get("LastEvaluatedKey")
            if len(entries) > limit:
                return entries[:limit], entries[limit - 1].seq
            if not last_key:
                return entries, None
            query["ExclusiveStartKey"] = last_key
        # Page budget spent with a filter that matches rarely: continue below the last seq read.
        return entries, int(last_key["seq"]["N"])

    def last_entry_before(self, user_id: str, bound: str, *, inclusive: bool) -> EntryMark | None:
        """One Query of the time index, newest first, one item (eventually consistent: 0.5 RCU)."""
        response = self.client.query(
            TableName=self.entries_table,
            IndexName=USER_CREATED_INDEX,
            KeyConditionExpression=f"user_id = :u AND created_at {'<=' if inclusive else '<'} :t",
            ExpressionAttributeValues={":u": _s(user_id), ":t": _s(bound)},
            ScanIndexForward=False,
            Limit=1,
        )
        items = response.get("Items", [])
        if not items:
            return None
        item = items[0]
        return EntryMark(
            seq=int(item["seq"]["N"]),
            balance_after=int(item["balance_after"]["N"]),
            hash=item["hash"]["S"] if "hash" in item else None,
            created_at=item["created_at"]["S"],
        )

    def entries_after(self, user_id: str, after_seq: int, limit: int) -> list[Entry]:
        """One strongly consistent Query of the table by seq, oldest first."""
        response = self.client.query(
            TableName=self.entries_table,
            KeyConditionExpression="user_id = :u AND seq > :s",
            ExpressionAttributeValues={":u": _s(user_id), ":s": _n(after_seq)},
            ScanIndexForward=True,
            ConsistentRead=True,
            Limit=limit,
        )
        return [entry_from_item(item) for item in response.get("Items", [])]

    def find_entry(self, entry_id: str) -> Entry | None:
        response = self.client.query(
            TableName=self.entries_table,
            IndexName=ENTRY_ID_INDEX,
            KeyConditionExpression="entry_id = :e",
            ExpressionAttributeValues={":e": _s(entry_id)},
            Limit=1,
        )
        items = response.get("Items", [])
        return entry_from_item(items[0]) if items else None

    # ---------------------------------------------------------------- the write
    def commit(
        self,
        writes: Sequence[AccountWrite],
        *,
        idempotency: IdempotencyClaim | None,
        guards: Sequence[Guard] = (),
    ) -> None:
        items: list[dict[str, Any]] = []
        roles: list[tuple[str, str]] = []  # per transact item: (kind, name)
        for write in writes:
            items.append({"Update": self._account_update(write)})
            roles.append(("account", write.before.user_id))
            for entry in write.entries:
                items.append(
                    {
                        "Put": {
                            "TableName": self.entries_table,
                            "Item": entry_to_item(entry),
                            "ConditionExpression": "attribute_not_exists(user_id)",
                        }
                    }
                )
                roles.append(("entry", entry.entry_id))
        if idempotency is not None:
            items.append({"Put": self._idempotency_put(idempotency)})
            roles.append(("idempotency", idempotency.pk))
        for guard in guards:
            items.append(self._guard_action(guard))
            roles.append(("guard", guard.name))
        token = hashlib.sha256(json.dumps(items, sort_keys=True).encode()).hexdigest()[:36]
        try:
            self.client.transact_write_items(TransactItems=items, ClientRequestToken=token)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            raise self._refusal(error, roles, writes, idempotency) from None

    def _guard_action(self, guard: Guard) -> dict[str, Any]:
        """Put-if-absent (or, `check_only`, a ConditionCheck that it is absent) of a guard item."""
        key: AttributeMap = {guard.key: _s(guard.pk)}
        table = guard.table or self.idempotency_table
        if guard.sk is not None:
            if self.predictions_table is None:
                raise InvariantViolation("a prediction guard needs PREDICTIONS_TABLE")
            key = {"pk": _s(guard.pk), "sk": _s(guard.sk)}
            table = self.predictions_table
        absent = {"ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": {"#k": "pk"}}
        if guard.sk is None:
            absent["ExpressionAttributeNames"] = {"#k": guard.key}
        if guard.check_only:
            return {"ConditionCheck": {"TableName": table, "Key": key, **absent}}
        item = {**key, **{k: attribute_value(v) for k, v in guard.attributes.items()}}
        return {"Put": {"TableName": table, "Item": item, **absent}}

    def _account_update(self, write: AccountWrite) -> dict[str, Any]:
        before, after = write.before, write.after
        # The head hash is checked with the version: a planner that chained on a wrong head
        # (it cannot, the head at a version never changes) would only cost a retry.
        values: AttributeMap = {
            ":b": _n(after.balance),
            ":v": _n(after.version),
            ":now": _s(after.updated_at or ""),
            ":ev": _n(before.version),
            ":eb": _n(before.balance),
        }
        if before.head_hash is None:
            condition = "version = :ev AND balance = :eb AND attribute_not_exists(head_hash)"
        else:
            condition = "version = :ev AND balance = :eb AND head_hash = :eh"
            values[":eh"] = _s(before.head_hash)
        if before.version == 0 and before.balance == 0:
            condition = f"attribute_not_exists(user_id) OR ({condition})"
        update = "SET balance = :b, version = :v, updated_at = :now, created_at = if_not_exists(created_at, :now)"
        if after.head_hash is not None:
            update += ", head_hash = :h"
            values[":h"] = _s(after.head_hash)
        return {
            "TableName": self.accounts_table,
            "Key": {"user_id": _s(before.user_id)},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _idempotency_put(self, claim: IdempotencyClaim) -> dict[str, Any]:
        return {
            "TableName": self.idempotency_table,
            "Item": stored_response_item(claim.pk, claim.response, expires_at=claim.expires_at),
            "ConditionExpression": "attribute_not_exists(pk)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _refusal(
        self,
        error: ClientError,
        roles: list[tuple[str, str]],
        writes: Sequence[AccountWrite],
        idempotency: IdempotencyClaim | None,
    ) -> TransactionRefused:
        reasons = error.response.get("CancellationReasons") or []
        befores = {w.before.user_id: w.before for w in writes}
        replay: StoredResponse | None = None
        stale: dict[str, Account] = {}
        guards_failed: list[str] = []
        entry_clash = conflict = False
        for (kind, name), reason in zip(roles, reasons, strict=False):
            code = reason.get("Code", "None")
            if code in ("None", None):
                continue
            if code in RETRYABLE_CANCELLATIONS:
                # Another transaction touched one of our items at the same moment, or DynamoDB
                # throttled one item: nothing was written, so plan again (after backoff) as is.
                conflict = True
                for user_id, before in befores.items():
                    stale.setdefault(user_id, before)
                continue
            if code != "ConditionalCheckFailed":
                raise error
            if kind == "account":
                item = reason.get("Item")
                stale[name] = account_from_item(item) if item else Account(user_id=name)
            elif kind == "idempotency" and idempotency is not None:
                item = reason.get("Item")
                replay = stored_response_from_item(item) if item else self.get_idempotency(idempotency.pk)
            elif kind == "guard":
                guards_failed.append(name)
            elif kind == "entry":
                entry_clash = True
        if entry_clash and not stale and replay is None:
            raise InvariantViolation("an entry at the next seq already exists: the account item is behind its chain")
        return TransactionRefused(replay=replay, stale=stale, guards_failed=guards_failed, conflict=conflict)


def batch_get(
    client: Any,
    table: str,
    keys: list[AttributeMap],
    *,
    projection: str | None = None,
    expression_names: dict[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[AttributeMap]:
    """BatchGetItem (ConsistentRead) of up to 100 keys of one table (`batch_get_tables`)."""
    if not keys:
        return []
    spec: dict[str, Any] = {"Keys": keys}
    if projection is not None:
        spec["ProjectionExpression"] = projection
    if expression_names:
        spec["ExpressionAttributeNames"] = expression_names
    return batch_get_tables(client, {table: spec}, sleep=sleep)[table]


def batch_get_tables(
    client: Any, specs: dict[str, dict[str, Any]], *, sleep: Callable[[float], None] = time.sleep
) -> dict[str, list[AttributeMap]]:
    """One BatchGetItem over several tables (up to 100 keys in all), every read strongly consistent.

    `specs` maps each table to its `KeysAndAttributes` (`Keys`, optionally a projection).
    `UnprocessedKeys` are asked again with bounded, jittered backoff; the items found, per table.
    """
    request: dict[str, Any] = {table: {**spec, "ConsistentRead": True} for table, spec in specs.items()}
    found: dict[str, list[AttributeMap]] = {table: [] for table in specs}
    for round_no in range(BATCH_GET_ROUNDS_MAX):
        response = client.batch_get_item(RequestItems=request)
        for table, items in response.get("Responses", {}).items():
            found.setdefault(table, []).extend(items)
        request = response.get("UnprocessedKeys") or {}
        if not request:
            return found
        sleep(random.random() * min(0.5, 0.02 * 2**round_no))
    raise RuntimeError("BatchGetItem left keys unprocessed after every retry")
