"""The same state machine on DynamoDB (moto, tables from template.yaml): fewer, shorter sequences.

What the in-memory fake cannot prove: the adapter's conditions and the decoding of
`CancellationReasons` agree with the model under replays, lost answers and concurrent writers.
"""

from __future__ import annotations

from typing import Any

import boto3
from hypothesis import HealthCheck, settings

from infra.template import LOCAL_REGION
from infra.world import create_tables, make_moto_atomic
from tests.conftest import STACK
from tests.invariants import assert_account_consistent
from tests.properties.machine import LedgerMachine
from tokenledger.adapters.dynamodb import DynamoLedgerRepository


class MotoLedgerMachine(LedgerMachine):
    def make_repository(self) -> DynamoLedgerRepository:
        from moto import mock_aws

        make_moto_atomic()
        self._mock: Any = mock_aws()
        self._mock.start()
        self.dynamodb = boto3.client("dynamodb", region_name=LOCAL_REGION)
        names = create_tables(STACK, self.dynamodb)
        return DynamoLedgerRepository(
            self.dynamodb,
            accounts_table=names["AccountsTable"],
            entries_table=names["EntriesTable"],
            idempotency_table=names["IdempotencyTable"],
        )

    def check_account(self, user_id: str) -> tuple[int, int]:
        found = assert_account_consistent(self.dynamodb, STACK, user_id)
        return found["balance"], found["version"]

    def teardown(self) -> None:
        mock = getattr(self, "_mock", None)
        if mock is not None:
            mock.stop()


MotoLedgerMachine.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ledger_rules_hold_for_any_sequence_on_moto = MotoLedgerMachine.TestCase
