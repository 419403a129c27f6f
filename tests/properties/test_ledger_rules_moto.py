"""The same state machine on DynamoDB (moto, or DynamoDB Local with TOKENLEDGER_ENGINE): fewer, shorter sequences.

What the in-memory fake cannot prove: the adapter's conditions and the decoding of
`CancellationReasons` agree with the model under replays, lost answers and concurrent writers.
"""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import HealthCheck, settings

from tests.conftest import STACK, engine_world
from tests.invariants import assert_account_consistent
from tests.properties.machine import LedgerMachine
from tokenledger.adapters.dynamodb import DynamoLedgerRepository

_endpoint: list[str | None] = [None]  # the selected engine's DynamoDB endpoint (None: moto)


@pytest.fixture(autouse=True)
def _engine(dynamodb_endpoint: str | None) -> None:
    """The state machine is a unittest-style class: it learns the engine through this."""
    _endpoint[0] = dynamodb_endpoint


class MotoLedgerMachine(LedgerMachine):
    """Each sequence starts on fresh tables of the template, on moto or DynamoDB Local."""

    def make_repository(self) -> DynamoLedgerRepository:
        self._world = contextlib.ExitStack()
        self.dynamodb = self._world.enter_context(engine_world(_endpoint[0]))
        return DynamoLedgerRepository(
            self.dynamodb,
            accounts_table=STACK.physical_name("AccountsTable"),
            entries_table=STACK.physical_name("EntriesTable"),
            idempotency_table=STACK.physical_name("IdempotencyTable"),
            predictions_table=STACK.physical_name("PredictionsTable"),
        )

    def check_account(self, user_id: str) -> tuple[int, int]:
        found = assert_account_consistent(self.dynamodb, STACK, user_id)
        return found["balance"], found["version"]

    def teardown(self) -> None:
        world = getattr(self, "_world", None)
        if world is not None:
            world.close()


MotoLedgerMachine.TestCase.settings = settings(
    max_examples=8,
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ledger_rules_hold_for_any_sequence_on_moto = MotoLedgerMachine.TestCase
