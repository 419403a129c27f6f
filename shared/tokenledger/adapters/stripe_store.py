"""What the Stripe use case reads and records beside the ledger's write path, on DynamoDB.

- a purchase is found through its exactly-once record in the idempotency table, read by
  the service through the ledger's repository (service/clawback.py), never through an index;
- clawback steps are guard items in the idempotency table (written by `Ledger.write`);
- every processed event gets one item in the Stripe events table (shape in docs/stripe.md),
  put if absent: in the entry's transaction when it writes one, alone otherwise.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from tokenledger.adapters.attributes import attribute_value, plain_item
from tokenledger.adapters.dynamodb import account_from_item, batch_get_tables
from tokenledger.domain.model import Account
from tokenledger.domain.stripe_events import EventRecord, StoredEvent, record_attributes, stored_event_from
from tokenledger.service.ports import STRIPE_EVENT_GUARD, Guard

PAYMENT_INDEX = "by-payment"
PAYMENT_OUTCOMES_MAX = 100  # events read per payment (a payment has a handful)
EVENT_KEY = "event_id"


def _stored(item: dict[str, Any]) -> StoredEvent:
    plain = plain_item(item)
    return stored_event_from(str(plain.pop(EVENT_KEY)), plain)


class DynamoStripeStore:
    """`StripeStore` on the accounts, idempotency and Stripe events tables."""

    def __init__(
        self,
        client: Any,
        *,
        entries_table: str,
        idempotency_table: str,
        events_table: str,
        accounts_table: str | None = None,
    ) -> None:
        self.client = client
        self.entries_table = entries_table
        self.idempotency_table = idempotency_table
        self.events_table = events_table
        self.accounts_table = accounts_table

    def event_and_account(self, event_id: str, user_id: str) -> tuple[StoredEvent | None, Account | None]:
        """One BatchGetItem, strongly consistent on both tables (`batch_get_tables`)."""
        if self.accounts_table is None:
            raise ValueError("this store was built without the accounts table")
        found = batch_get_tables(
            self.client,
            {
                self.events_table: {"Keys": [{EVENT_KEY: {"S": event_id}}]},
                self.accounts_table: {"Keys": [{"user_id": {"S": user_id}}]},
            },
        )
        events, accounts = found[self.events_table], found[self.accounts_table]
        return (
            _stored(events[-1]) if events else None,
            account_from_item(accounts[-1]) if accounts else None,
        )

    def stored_event(self, event_id: str) -> StoredEvent | None:
        item = self.client.get_item(
            TableName=self.events_table, Key={EVENT_KEY: {"S": event_id}}, ConsistentRead=True
        ).get("Item")
        return _stored(item) if item is not None else None

    def put_event(self, record: EventRecord, *, processed_at: str, content_hash: str) -> StoredEvent | None:
        """One conditional PutItem; on a redelivery, one more GetItem to return the first record."""
        item = {EVENT_KEY: {"S": record.event_id}}
        for name, value in record_attributes(record, processed_at=processed_at, content_hash=content_hash).items():
            item[name] = attribute_value(value)
        try:
            self.client.put_item(
                TableName=self.events_table,
                Item=item,
                ConditionExpression="attribute_not_exists(#k)",
                ExpressionAttributeNames={"#k": EVENT_KEY},
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return self.stored_event(record.event_id)
        return None

    def event_guard(self, record: EventRecord, *, processed_at: str, content_hash: str) -> Guard:
        return Guard(
            name=STRIPE_EVENT_GUARD,
            pk=record.event_id,
            attributes=record_attributes(record, processed_at=processed_at, content_hash=content_hash),
            table=self.events_table,
            key=EVENT_KEY,
        )

    def payment_outcomes(self, payment_id: str) -> set[str]:
        response = self.client.query(
            TableName=self.events_table,
            IndexName=PAYMENT_INDEX,
            KeyConditionExpression="payment_id = :p",
            ExpressionAttributeValues={":p": {"S": payment_id}},
            Limit=PAYMENT_OUTCOMES_MAX,
        )
        return {item["outcome"]["S"] for item in response.get("Items", []) if "outcome" in item}
