"""The ledger invariants live in `infra.invariants` (shared with chaos and bench); re-exported for the tests."""

from infra.invariants import InvariantBroken, assert_account_consistent, chain_of, require

__all__ = ["InvariantBroken", "assert_account_consistent", "chain_of", "require"]
