"""Property: any sequence of ledger operations, with lost answers and concurrent writers, keeps the rules.

The real `Ledger` over the in-memory repository (DynamoDB's transaction semantics), checked
against a model of balances after every step: balance = sum of entries, seq 1..n, the chain,
never below zero, each idempotency key moving tokens at most once.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

from tests.fakes import FakeRepository
from tests.properties.machine import LedgerMachine
from tokenledger.domain.model import Account


class InMemoryLedgerMachine(LedgerMachine):
    def make_repository(self) -> FakeRepository:
        self.fake = FakeRepository()
        return self.fake

    def check_account(self, user_id: str) -> tuple[int, int]:
        self.fake.assert_consistent(user_id)
        account = self.fake.accounts.get(user_id, Account(user_id=user_id))
        return account.balance, account.version


InMemoryLedgerMachine.TestCase.settings = settings(
    max_examples=150,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_ledger_rules_hold_for_any_sequence_in_memory = InMemoryLedgerMachine.TestCase
