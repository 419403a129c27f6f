"""Configuration read once, at the edge (cold start), from the environment the template sets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service import stays lazy at run time
    from tokenledger.service.cursor import CursorCodec
    from tokenledger.service.ledger import Ledger
    from tokenledger.service.predictions import Predictions


@dataclass(frozen=True, slots=True)
class Settings:
    accounts_table: str
    entries_table: str
    idempotency_table: str
    predictions_table: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            accounts_table=os.environ["ACCOUNTS_TABLE"],
            entries_table=os.environ["ENTRIES_TABLE"],
            idempotency_table=os.environ["IDEMPOTENCY_TABLE"],
            predictions_table=os.environ.get("PREDICTIONS_TABLE") or None,
        )


def build_ledger_from_env() -> Ledger:
    """The ledger wired to DynamoDB, with table names from the environment."""
    from tokenledger.adapters.dynamodb import DynamoLedgerRepository, make_client
    from tokenledger.service.ledger import Ledger

    settings = Settings.from_env()
    repo = DynamoLedgerRepository(
        make_client(),
        accounts_table=settings.accounts_table,
        entries_table=settings.entries_table,
        idempotency_table=settings.idempotency_table,
        predictions_table=settings.predictions_table,
    )
    return Ledger(repo, cursors=cursor_codec_from_env())


def build_predictions_from_env() -> Predictions:
    """Close and settle predictions: the ledger, the predictions table and the settlement queue."""
    from tokenledger.adapters.predictions import DynamoPredictionStore, SqsSettlementQueue
    from tokenledger.service.admin import AdminOperations
    from tokenledger.service.predictions import Predictions

    ledger = build_ledger_from_env()
    settings = Settings.from_env()
    if settings.predictions_table is None:
        raise RuntimeError("PREDICTIONS_TABLE is not set")
    store = DynamoPredictionStore(
        ledger.repo.client,  # type: ignore[attr-defined]
        predictions_table=settings.predictions_table,
        idempotency_table=settings.idempotency_table,
    )
    queue_url = os.environ.get("SETTLEMENT_QUEUE_URL")
    return Predictions(AdminOperations(ledger), store, SqsSettlementQueue(queue_url) if queue_url else None)


def cursor_codec_from_env() -> CursorCodec:
    """History cursors keyed by the secret named in `CURSOR_SECRET_NAME` (read on first use, cached).

    Without it (functions that never page, scripts), a key of this process alone.
    """
    from tokenledger.service.cursor import CursorCodec, key_from_secret

    name = os.environ.get("CURSOR_SECRET_NAME", "").strip()
    if not name:
        return CursorCodec()
    from tokenledger.adapters.dynamodb import make_client
    from tokenledger.adapters.stripe_signature import secret_from_secrets_manager

    return CursorCodec(key_from_secret(secret_from_secrets_manager(name, client=make_client("secretsmanager"))))
