"""Configuration read once, at the edge (cold start), from the environment the template sets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the service import stays lazy at run time
    from tokenledger.service.ledger import Ledger


@dataclass(frozen=True, slots=True)
class Settings:
    accounts_table: str
    entries_table: str
    idempotency_table: str

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            accounts_table=os.environ["ACCOUNTS_TABLE"],
            entries_table=os.environ["ENTRIES_TABLE"],
            idempotency_table=os.environ["IDEMPOTENCY_TABLE"],
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
    )
    return Ledger(repo)
