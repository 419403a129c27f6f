"""What the Stripe use case reads and records beside the ledger's write path, on DynamoDB.

- purchases are found through the entries table's `by-related-id` index (KEYS_ONLY, so each
  hit is read back in full, strongly consistent, by its (user_id, seq));
- clawback steps are guard items in the idempotency table (written by `Ledger.write`);
- every processed event is upserted into the Stripe events table (shape in docs/stripe.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from tokenledger.adapters.dynamodb import RELATED_ID_INDEX, AttributeMap, _plain_to_attr, entry_from_item
from tokenledger.domain.model import Entry

if TYPE_CHECKING:
    from tokenledger.adapters.stripe_signature import StripeSignatureVerifier
    from tokenledger.service.stripe_credits import EventRecord, StripeCredits

PAYMENT_INDEX = "by-payment"
PAYMENT_OUTCOMES_MAX = 100  # events read per payment (a payment has a handful)
EVENT_KEY = "event_id"


class DynamoStripeStore:
    """`StripeStore` on the entries, idempotency and Stripe events tables."""

    def __init__(self, client: Any, *, entries_table: str, idempotency_table: str, events_table: str) -> None:
        self.client = client
        self.entries_table = entries_table
        self.idempotency_table = idempotency_table
        self.events_table = events_table

    def related_entries(self, related_id: str, *, limit: int) -> Iterator[Entry]:
        """Oldest first (entry ids are ULIDs), at most `limit`, each read only when the caller asks.

        The index is eventually consistent: a write of a moment ago may be missing from it.
        """
        response = self.client.query(
            TableName=self.entries_table,
            IndexName=RELATED_ID_INDEX,
            KeyConditionExpression="related_id = :r",
            ExpressionAttributeValues={":r": {"S": related_id}},
            ScanIndexForward=True,
            Limit=limit,
        )
        for key_item in response.get("Items", []):
            item = self.client.get_item(
                TableName=self.entries_table,
                Key={"user_id": key_item["user_id"], "seq": key_item["seq"]},
                ConsistentRead=True,
            ).get("Item")
            if item is not None:
                yield entry_from_item(item)

    def clawback_step(self, pk: str) -> int | None:
        item = self.client.get_item(
            TableName=self.idempotency_table,
            Key={"pk": {"S": pk}},
            ConsistentRead=True,
            ProjectionExpression="#to",
            ExpressionAttributeNames={"#to": "to"},
        ).get("Item")
        return int(item["to"]["N"]) if item and "to" in item else None

    def payment_outcomes(self, payment_id: str) -> set[str]:
        response = self.client.query(
            TableName=self.events_table,
            IndexName=PAYMENT_INDEX,
            KeyConditionExpression="payment_id = :p",
            ExpressionAttributeValues={":p": {"S": payment_id}},
            Limit=PAYMENT_OUTCOMES_MAX,
        )
        return {item["outcome"]["S"] for item in response.get("Items", []) if "outcome" in item}

    def record_event(self, record: EventRecord, *, processed_at: str) -> None:
        """One UpdateItem: the latest processing's fields (absent ones removed), deliveries counted."""
        names = {"#deliveries": "deliveries", "#first": "first_processed_at", "#last": "last_processed_at"}
        values: AttributeMap = {":one": {"N": "1"}, ":now": {"S": processed_at}}
        sets = ["#first = if_not_exists(#first, :now)", "#last = :now"]
        removes = []
        for number, spec in enumerate(fields(record)):
            if spec.name == EVENT_KEY:
                continue
            value = getattr(record, spec.name)
            names[f"#f{number}"] = spec.name
            if value is None:
                removes.append(f"#f{number}")
                continue
            values[f":v{number}"] = _plain_to_attr(value)
            sets.append(f"#f{number} = :v{number}")
        expression = "SET " + ", ".join(sets) + " ADD #deliveries :one"
        if removes:
            expression += " REMOVE " + ", ".join(removes)
        self.client.update_item(
            TableName=self.events_table,
            Key={EVENT_KEY: {"S": record.event_id}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )


@dataclass(frozen=True, slots=True)
class StripeWebhook:
    """The webhook's parts, built once per execution environment."""

    verifier: StripeSignatureVerifier
    credits: StripeCredits


def build_stripe_webhook_from_env() -> StripeWebhook:
    """Wired from the template's environment: ledger tables, `STRIPE_EVENTS_TABLE`, `STRIPE_WEBHOOK_SECRET_NAME`."""
    from tokenledger.adapters.dynamodb import DynamoLedgerRepository, make_client
    from tokenledger.adapters.stripe_signature import StripeSignatureVerifier, secret_from_secrets_manager
    from tokenledger.config import Settings
    from tokenledger.service.ledger import Ledger
    from tokenledger.service.stripe_credits import StripeCredits

    settings = Settings.from_env()
    dynamodb = make_client()
    repo = DynamoLedgerRepository(
        dynamodb,
        accounts_table=settings.accounts_table,
        entries_table=settings.entries_table,
        idempotency_table=settings.idempotency_table,
    )
    store = DynamoStripeStore(
        dynamodb,
        entries_table=settings.entries_table,
        idempotency_table=settings.idempotency_table,
        events_table=os.environ["STRIPE_EVENTS_TABLE"],
    )
    secret = secret_from_secrets_manager(os.environ["STRIPE_WEBHOOK_SECRET_NAME"], client=make_client("secretsmanager"))
    return StripeWebhook(
        verifier=StripeSignatureVerifier(secret),
        credits=StripeCredits(ledger=Ledger(repo), store=store),
    )
