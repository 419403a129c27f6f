"""The predictions table on DynamoDB: closed markers, stakes, settlements and their plans."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

from botocore.exceptions import ClientError

from tokenledger.adapters.attributes import plain_item
from tokenledger.domain.errors import InvariantViolation
from tokenledger.service.prediction_keys import (
    CLOSED_SK,
    SETTLEMENT_SK,
    STAKE_SK_PREFIX,
    plan_sk,
    prediction_pk,
)

BATCH_WRITE_ITEMS_MAX = 25
BATCH_WRITE_ROUNDS_MAX = 10
# 100,000 stakes are about 15 pages of 1 MB; this bounds a runaway read far above that.
STAKE_PAGES_MAX = 10_000

AttributeMap = dict[str, dict[str, Any]]


class DynamoPredictionStore:
    def __init__(self, client: Any, *, predictions_table: str, idempotency_table: str) -> None:
        self.client = client
        self.table = predictions_table
        self.idempotency_table = idempotency_table

    def _key(self, prediction_id: str, sk: str) -> AttributeMap:
        return {"pk": {"S": prediction_pk(prediction_id)}, "sk": {"S": sk}}

    def _get(self, prediction_id: str, sk: str) -> dict[str, Any] | None:
        item = self.client.get_item(TableName=self.table, Key=self._key(prediction_id, sk), ConsistentRead=True).get(
            "Item"
        )
        return plain_item(item) if item else None

    # ---------------------------------------------------------------- close
    def close(self, prediction_id: str, *, actor: str, now: str) -> dict[str, Any]:
        """Put the closed marker if absent; the marker as stored (the first close wins)."""
        item = {**self._key(prediction_id, CLOSED_SK), "closed_at": {"S": now}, "actor": {"S": actor}}
        try:
            self.client.put_item(TableName=self.table, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            found = self._get(prediction_id, CLOSED_SK)
            if found is None:
                raise InvariantViolation(f"closed marker of {prediction_id} refused but absent") from None
            return found
        return plain_item(item)

    def closed(self, prediction_id: str) -> dict[str, Any] | None:
        return self._get(prediction_id, CLOSED_SK)

    # ---------------------------------------------------------------- stakes
    def stakes(self, prediction_id: str) -> Iterator[tuple[str, int]]:
        """(user_id, amount) of every stake item, strongly consistent, page by page."""
        query: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": prediction_pk(prediction_id)},
                ":prefix": {"S": STAKE_SK_PREFIX},
            },
            "ProjectionExpression": "user_id, amount",
            "ConsistentRead": True,
        }
        for _ in range(STAKE_PAGES_MAX):
            page = self.client.query(**query)
            for item in page.get("Items", []):
                yield item["user_id"]["S"], int(item["amount"]["N"])
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            query["ExclusiveStartKey"] = last
        raise InvariantViolation(f"more than {STAKE_PAGES_MAX} pages of stakes on {prediction_id}")

    # ---------------------------------------------------------------- the plan
    def put_plan(self, prediction_id: str, settlement_id: str, chunks: Sequence[Sequence[tuple[str, int]]]) -> None:
        """One item per chunk, `ops` as a compact JSON list of [user_id, amount]."""
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        **self._key(prediction_id, plan_sk(settlement_id, index)),
                        "ops": {"S": json.dumps([list(op) for op in chunk], separators=(",", ":"))},
                    }
                }
            }
            for index, chunk in enumerate(chunks)
        ]
        for start in range(0, len(requests), BATCH_WRITE_ITEMS_MAX):
            pending: dict[str, Any] = {self.table: requests[start : start + BATCH_WRITE_ITEMS_MAX]}
            for round_no in range(BATCH_WRITE_ROUNDS_MAX):
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
                if not pending:
                    break
                time.sleep(random.random() * min(1.0, 0.02 * 2**round_no))
            else:
                raise RuntimeError("BatchWriteItem left plan items unprocessed after every retry")

    def plan_chunk(self, prediction_id: str, settlement_id: str, index: int) -> list[tuple[str, int]]:
        found = self._get(prediction_id, plan_sk(settlement_id, index))
        if found is None:
            raise InvariantViolation(f"settlement {settlement_id} has no plan chunk {index}")
        return [(str(user_id), int(amount)) for user_id, amount in json.loads(found["ops"])]

    # ---------------------------------------------------------------- the settlement item
    def settlement(self, prediction_id: str) -> dict[str, Any] | None:
        return self._get(prediction_id, SETTLEMENT_SK)

    def advance(self, prediction_id: str, *, chunk: int, tokens: int, entries: int, now: str) -> bool:
        """Record chunk `chunk` as done, once: False if the progress had already moved past it."""
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(prediction_id, SETTLEMENT_SK),
                UpdateExpression="SET chunks_done = :next, #s = :running, updated_at = :now "
                "ADD paid_total :tokens, entries_written :entries",
                ConditionExpression="chunks_done = :chunk",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={
                    ":chunk": {"N": str(chunk)},
                    ":next": {"N": str(chunk + 1)},
                    ":running": {"S": "running"},
                    ":now": {"S": now},
                    ":tokens": {"N": str(tokens)},
                    ":entries": {"N": str(entries)},
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def finish(self, prediction_id: str, *, status: str, now: str, detail: str | None = None) -> bool:
        """Move the settlement to `completed` (every chunk done) or `failed`, once."""
        values: AttributeMap = {":status": {"S": status}, ":now": {"S": now}, ":completed": {"S": "completed"}}
        update = "SET #s = :status, updated_at = :now, finished_at = :now"
        condition = "#s <> :completed"
        if status == "completed":
            update += ", completed_at = :now"
            condition += " AND chunks_done = chunks_total"
        if detail is not None:
            update += ", failure = :detail"
            values[":detail"] = {"S": detail[:1000]}
        try:
            self.client.update_item(
                TableName=self.table,
                Key=self._key(prediction_id, SETTLEMENT_SK),
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True


class SqsSettlementQueue:
    """The settlement queue; the SQS client is made on first use (most admin calls never send)."""

    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self.client = client

    def send(self, message: dict[str, Any]) -> None:
        if self.client is None:
            from tokenledger.adapters.dynamodb import make_client

            self.client = make_client("sqs")
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message, separators=(",", ":")))
