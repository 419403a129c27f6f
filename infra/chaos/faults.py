"""Faults injected at the DynamoDB client: what can go wrong, where, and the hook that injects it.

Each client's handlers make their DynamoDB calls through one patched
`BaseClient._make_api_call`; a call made inside `faults(injector)` may fail as `FAULT_KINDS`
describe (docs/reliability.md, "Faults"). The decisions come from the injector's own seeded
`random.Random`, so one client's faults replay exactly from the run's seed.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from infra.api_calls import intercept_service
from infra.template import LOCAL_REGION

# What can go wrong at the DynamoDB client, and where.
FAULT_THROTTLE = "throttle"  # refused before sending: nothing applied
FAULT_TIMEOUT_AFTER_COMMIT = "timeout_after_commit"  # the write committed, the caller sees a read timeout
FAULT_CONFLICT = "transaction_conflict"  # TransactionCanceledException/TransactionConflict, nothing applied
FAULT_CANCELLED = "transaction_cancelled"  # TransactionCanceledException/ThrottlingError, nothing applied
FAULT_DIED_AFTER_READ = "lambda_died_after_read"  # the environment dies between the read and the write
FAULT_DIED_AFTER_COMMIT = "lambda_died_after_commit"  # the environment dies right after the write committed
FAULT_KINDS = (
    FAULT_THROTTLE,
    FAULT_TIMEOUT_AFTER_COMMIT,
    FAULT_CONFLICT,
    FAULT_CANCELLED,
    FAULT_DIED_AFTER_READ,
    FAULT_DIED_AFTER_COMMIT,
)
_TRANSACTION_FAULTS = (FAULT_TIMEOUT_AFTER_COMMIT, FAULT_CONFLICT, FAULT_CANCELLED, FAULT_DIED_AFTER_COMMIT)
_WRITE_OPERATIONS = frozenset({"TransactWriteItems", "PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"})
_ACCOUNT_READS = frozenset({"GetItem", "BatchGetItem"})


class LambdaDied(BaseException):
    """The execution environment died (out of memory, killed): nothing in the handler catches it."""


class FaultInjector:
    """Decides, per DynamoDB call made by one client's handlers, whether and how it fails."""

    def __init__(self, rng: random.Random, rate: float, accounts_table: str) -> None:
        self.rng = rng
        self.rate = rate
        self.accounts_table = accounts_table
        self.injected: Counter[str] = Counter()

    def call(self, original: Callable[..., Any], client: Any, operation: str, params: dict[str, Any]) -> Any:
        kind = self._choose(operation, params)
        if kind is None:
            return original(client, operation, params)
        self.injected[kind] += 1
        if kind == FAULT_THROTTLE:
            code = "ThrottlingException" if operation in _WRITE_OPERATIONS else "ProvisionedThroughputExceededException"
            raise _client_error(client, operation, code, "Rate of requests exceeds the allowed throughput.")
        if kind == FAULT_CONFLICT:
            raise _cancelled(client, operation, params, "TransactionConflict", "Transaction is ongoing for the item")
        if kind == FAULT_CANCELLED:
            raise _cancelled(client, operation, params, "ThrottlingError", "Throughput exceeds the current capacity")
        original(client, operation, params)  # the write goes through; its answer is lost
        if kind == FAULT_TIMEOUT_AFTER_COMMIT:
            from botocore.exceptions import ReadTimeoutError

            raise ReadTimeoutError(endpoint_url=f"https://dynamodb.{LOCAL_REGION}.amazonaws.com/")
        raise LambdaDied(f"environment died after {operation}")

    def _choose(self, operation: str, params: dict[str, Any]) -> str | None:
        if self.rng.random() >= self.rate:
            return None
        kinds: list[str] = [FAULT_THROTTLE]
        if operation == "TransactWriteItems":
            kinds.extend(_TRANSACTION_FAULTS)
        elif operation in _ACCOUNT_READS and self._reads_accounts(params):
            kinds.append(FAULT_DIED_AFTER_READ)
        return self.rng.choice(kinds)

    def _reads_accounts(self, params: dict[str, Any]) -> bool:
        if "TableName" in params:
            return bool(params["TableName"] == self.accounts_table)
        return self.accounts_table in (params.get("RequestItems") or {})


def _client_error(client: Any, operation: str, code: str, message: str, **extra: Any) -> Exception:
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
        **extra,
    }
    error_class = client.exceptions.from_code(code)
    return error_class(response, operation)  # type: ignore[no-any-return]


def _cancelled(client: Any, operation: str, params: dict[str, Any], code: str, message: str) -> Exception:
    count = len(params.get("TransactItems") or [])
    reasons = [{"Code": code, "Message": message}] + [{"Code": "None"}] * (count - 1)
    summary = ", ".join(r["Code"] for r in reasons)
    return _client_error(
        client,
        operation,
        "TransactionCanceledException",
        f"Transaction cancelled, please refer cancellation reasons for specific reasons [{summary}]",
        CancellationReasons=reasons,
    )


_active = threading.local()


def install_fault_hook() -> None:
    """DynamoDB calls consult the calling thread's injector, if any (`infra.api_calls`, installed once).

    Above botocore's own retry layer: a fault reaches the handler as if botocore's retries
    were spent (throttling) or as the one answer that counts (timeout, cancellation).
    """
    intercept_service("dynamodb", _through_thread_injector)


def _through_thread_injector(original: Callable[..., Any], client: Any, operation_name: str, params: Any) -> Any:
    injector: FaultInjector | None = getattr(_active, "injector", None)
    if injector is None:
        return original(client, operation_name, params)
    return injector.call(original, client, operation_name, params)


@contextlib.contextmanager
def faults(injector: FaultInjector | None) -> Iterator[None]:
    """Inject `injector`'s faults into the DynamoDB calls this thread makes inside the block."""
    previous = getattr(_active, "injector", None)
    _active.injector = injector
    try:
        yield
    finally:
        _active.injector = previous
