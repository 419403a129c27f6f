"""A seeded, concurrent workload with faults injected at the DynamoDB client, then invariant checks.

    python -m infra.chaos --seed 7 --ops 2000 --clients 8 --fault-rate 0.1 [--engine moto|dynamodb-local]

Many clients drive the REAL handlers (`infra.api.LocalApi`, one set of Lambda environments
per client) over a few hot accounts: commitments (some with If-Match), admin grants,
payouts, refunds, adjustments, replays and key reuses, plus whatever of batches, reversals,
Stripe webhooks, audit/repair and the reconciliation the template declares. Each DynamoDB call a handler
makes may be hit by a fault (see `FAULT_KINDS`); clients retry like real clients, with the
same Idempotency-Key or the same Stripe event, until they get a definite answer (2xx or
4xx). Then, with faults off, the run checks the ledger (see `Verifier`) and prints the seed,
operation counts, faults injected by kind and each invariant's result. Exit status 1 if any
invariant fails.

Reproducible from the seed: each client's operations and each client's fault decisions
come from their own `random.Random` seeded from (seed, client). With one client a run is
replayed exactly; with several, the thread interleaving (and so which requests contend)
varies from run to run, as it would in production.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import hmac
import json
import os
import random
import sys
import threading
import time
import warnings
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from infra.api import ApiResponse, LocalApi
from infra.chaos_events import EventsUnderFaults
from infra.invariants import InvariantBroken, assert_account_consistent, require
from infra.queues import QueuePump, create_queues
from infra.template import LOCAL_REGION, Stack
from infra.world import LOCAL_AWS_ENVIRONMENT

ENGINES = ("moto", "dynamodb-local")
HOT_ACCOUNTS = 6
PREDICTIONS = 5
SETTLED_PREDICTIONS = 3
SETTLE_BODY = {"reason": "chaos: voided", "outcome": "cancelled"}
CLIENT_ATTEMPTS_MAX = 60  # a client gives up (outcome unknown) after this many tries of one request
CLIENT_RETRY_DELAY_MS_MAX = 20
HISTORY_PAGE = 100
HISTORY_PAGES_MAX = 1_000
BATCH_OPERATIONS = 4
PROGRESS_EVERY_S = 15.0
SHARED_RECENT_MAX = 60  # recent entries / purchases any client may reverse, redeliver or refund
REPEATABLE_RECENT_MAX = 50  # a client's own recent acknowledged requests it may replay
# Audits and repairs read an account's whole chain: on hot accounts their cost grows with the
# run, so a long run would spend most of its time in them. A few per client cover the race.
WHOLE_CHAIN_READS_PER_CLIENT_MAX = 40
# Reconciliation findings that report a business fact, not a ledger error (the report stays healthy).
RECONCILE_NOTICE_KINDS = frozenset({"unrecovered_chargeback"})
# What an audit may see while a Stripe webhook is between its ledger write and its event record
# (the record is a second call; a crash between leaves it missing until Stripe redelivers).
# The end-of-run reconciliation, after every delivery got its 2xx, must not see it.
AUDIT_PENDING_KINDS = frozenset({"purchase_without_payment"})
WELCOME_GRANT_ACTOR = "system:post-confirmation"  # the actor of the sign-up trigger's grant
CHAOS_WELCOME_GRANT_TOKENS = 25  # the template's WelcomeGrantTokens for a run (default 0: no grant)

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


# ---------------------------------------------------------------- fault injection
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
_patch_lock = threading.Lock()
_patched = False


def install_fault_hook() -> None:
    """Patch `BaseClient._make_api_call` once; it consults the calling thread's injector, if any.

    Above botocore's own retry layer: a fault reaches the handler as if botocore's retries
    were spent (throttling) or as the one answer that counts (timeout, cancellation).
    """
    global _patched
    with _patch_lock:
        if _patched:
            return
        from botocore.client import BaseClient

        original = BaseClient._make_api_call

        def make_api_call(self: Any, operation_name: str, api_params: dict[str, Any]) -> Any:
            injector: FaultInjector | None = getattr(_active, "injector", None)
            if injector is None or self.meta.service_model.service_name != "dynamodb":
                return original(self, operation_name, api_params)
            return injector.call(original, self, operation_name, api_params)

        BaseClient._make_api_call = make_api_call  # type: ignore[method-assign]
        _patched = True


@contextlib.contextmanager
def faults(injector: FaultInjector | None) -> Iterator[None]:
    """Inject `injector`'s faults into the DynamoDB calls this thread makes inside the block."""
    previous = getattr(_active, "injector", None)
    _active.injector = injector
    try:
        yield
    finally:
        _active.injector = previous


# ---------------------------------------------------------------- the workload
@dataclass
class Request:
    method: str
    path: str
    claims: dict[str, Any] | None
    body: Any = None
    key: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # exact bytes to send (Stripe signs the raw body)
    stripe: bool = False  # a webhook delivery: signed afresh on each try, retried until 2xx
    trigger: dict[str, Any] | None = None  # a Cognito trigger event, invoked on `path` (a function id)
    query: dict[str, str] | None = None


@dataclass
class Op:
    """One logical operation of one client, and what it finally got."""

    client: int
    number: int
    kind: str
    user_id: str
    request: Request
    key: str | None
    amount: int = 0  # the signed amount asked for (0 for reads)
    origin: Op | None = None  # the operation a replay or key reuse repeats
    status: int | None = None  # the definite answer's status; None = never got one
    body: Any = None
    replayed: bool = False
    attempts: int = 0
    transient: Counter[str] = field(default_factory=Counter)  # 5xx, died, contention seen on the way
    stripe: dict[str, Any] | None = None  # what a Stripe event was about (payment, package)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def definite(self) -> bool:
        return self.status is not None

    def entries(self) -> list[dict[str, Any]]:
        """The entries an acknowledged write answered with."""
        if not self.ok or not isinstance(self.body, dict):
            return []
        if isinstance(self.body.get("entry"), dict):
            return [self.body["entry"]]
        found = self.body.get("entries")
        return list(found) if isinstance(found, list) else []


@dataclass
class Features:
    """What the template serves today; the workload drives all of it."""

    batches: bool
    reversals: bool
    stripe: bool
    audit: bool  # the per-account audit and repair routes
    balances: bool  # the admin balance summary
    signup: str | None  # the Cognito PostConfirmation function's logical id
    reconcile: str | None  # the function's logical id
    predictions: bool = False  # close and settle (the settlement worker behind the queue)

    @classmethod
    def of(cls, stack: Stack, api: LocalApi) -> Features:
        reconcile = next((f for f in stack.functions() if "reconcil" in f.lower()), None)
        signup = next((f for f in stack.functions() if "postconfirmation" in f.lower()), None)
        return cls(
            batches=api.match("POST", "/v1/admin/batches") is not None,
            reversals=api.match("POST", "/v1/admin/entries/x/reversal") is not None,
            stripe=api.match("POST", "/v1/webhooks/stripe") is not None,
            audit=api.match("POST", "/v1/admin/accounts/x/repair") is not None
            and api.match("GET", "/v1/admin/accounts/x/audit") is not None,
            balances=api.match("GET", "/v1/admin/balances") is not None,
            signup=signup,
            reconcile=reconcile,
            predictions=api.match("POST", "/v1/admin/predictions/x/settlement") is not None,
        )

    def names(self) -> list[str]:
        found = ["commitments", "admin entries"]
        found += [n for n, on in (("batches", self.batches), ("reversals", self.reversals)) if on]
        found += ["stripe"] if self.stripe else []
        found += ["audit and repair"] if self.audit else []
        found += ["sign-up trigger"] if self.signup else []
        found += ["reconciliation"] if self.reconcile else []
        found += ["close and settle predictions"] if self.predictions else []
        return found


class Workload:
    """The shared, seeded description of a run: users, admins, the operation mix."""

    def __init__(
        self, seed: int, stack: Stack, features: Features, stripe_secret: str | None, accounts: int = HOT_ACCOUNTS
    ) -> None:
        self.seed = seed
        self.stack = stack
        self.features = features
        self.stripe_secret = stripe_secret
        self.run_id = f"r{seed}"
        self.users = [f"u-{self.run_id}-{i}" for i in range(accounts)]
        self.predictions = [f"p-{self.run_id}-{i}" for i in range(PREDICTIONS)]
        # Predictions that get closed and settled (cancelled) while users commit to them. Only
        # commitments (and reversals) touch them, so their refunds must equal what each user put in.
        self.settled = [f"p-{self.run_id}-s{i}" for i in range(SETTLED_PREDICTIONS)] if features.predictions else []
        self.packages = _catalog_package_ids()
        mix: list[tuple[str, int]] = [
            ("commitment", 30),
            ("commitment_if_match", 6),
            ("grant", 16),
            ("payout", 6),
            ("refund", 3),
            ("adjustment", 5),
            ("replay", 8),
            ("key_reuse", 2),
            ("balance", 4),
            ("history", 2),
        ]
        if features.batches:
            mix.append(("batch", 5))
        if features.reversals:
            mix.append(("reversal", 4))
        if features.stripe and stripe_secret:
            mix += [("stripe_purchase", 8), ("stripe_refund", 3), ("stripe_dispute", 1), ("stripe_redelivery", 4)]
        if features.audit:
            mix += [("audit", 2), ("repair", 1)]
        if features.signup:
            mix.append(("signup", 2))
        if features.balances:
            mix.append(("admin_balances", 2))
        if features.predictions:
            mix += [("commitment_settled", 8), ("close", 1), ("settle", 1)]
        self.kinds = [k for k, _ in mix]
        self.weights = [w for _, w in mix]
        # What every client may act on next: recent entries (to reverse) and purchases (to
        # redeliver or refund), so two clients can race on the same entry or payment.
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=SHARED_RECENT_MAX)
        self._purchases: deque[Op] = deque(maxlen=SHARED_RECENT_MAX)

    def share(self, op: Op) -> None:
        if not op.ok or op.kind in ("replay", "key_reuse"):
            return
        with self._lock:
            if op.kind == "stripe_purchase":
                self._purchases.append(op)
            self._entries.extend(e for e in op.entries() if e.get("type") != "reversal")

    def recent_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def recent_purchases(self) -> list[Op]:
        with self._lock:
            return list(self._purchases)


def _catalog_price(package_id: str) -> dict[str, Any]:
    """What Stripe reports for a session of the package at its catalog price (the webhook checks it)."""
    from tokenledger.domain.catalog import load_catalog

    found = load_catalog().find(package_id)
    if found is None:
        raise ValueError(f"no package {package_id} in the catalog")
    amount = found.price.amount
    return {"amount_subtotal": amount, "amount_total": amount, "currency": found.price.currency}


def _catalog_package_ids() -> list[str]:
    from tokenledger.domain.catalog import load_catalog

    return [p.package_id for p in load_catalog().packages]


def user_claims(user_id: str) -> dict[str, Any]:
    return {"sub": user_id}


def admin_claims(client: int) -> dict[str, Any]:
    return {"sub": f"admin-chaos-{client}", "cognito:groups": "[admin support]"}


class Client:
    """One concurrent caller: its own Lambda environments, its own seeded choices and faults."""

    def __init__(self, number: int, workload: Workload, ops: int, fault_rate: float, accounts_table: str) -> None:
        self.number = number
        self.workload = workload
        self.ops_planned = ops
        self.rng = random.Random(f"{workload.seed}:ops:{number}")
        self.injector = FaultInjector(random.Random(f"{workload.seed}:faults:{number}"), fault_rate, accounts_table)
        self.api = LocalApi(workload.stack)
        self.done: list[Op] = []
        self.repeatable: deque[Op] = deque(maxlen=REPEATABLE_RECENT_MAX)
        self.versions: dict[str, int] = {}  # last version this client saw per user (for If-Match)
        self.died = 0
        self.invoke_errors: Counter[str] = Counter()  # invokes that failed outside the handler
        self.triggers: dict[str, Any] = {}  # warm environments of non-HTTP functions (Cognito triggers)
        self._keys = 0
        self._whole_chain_reads = 0  # audits and repairs sent (each reads the account's whole chain)

    # ------------------------------------------------------------ running
    def run(self) -> None:
        for number in range(self.ops_planned):
            op = self.next_op(number)
            self.execute(op)
            self.done.append(op)
            if op.ok and op.key is not None and op.kind not in ("replay", "key_reuse"):
                self.repeatable.append(op)
            self.workload.share(op)

    def execute(self, op: Op) -> None:
        for attempt in range(1, CLIENT_ATTEMPTS_MAX + 1):
            op.attempts = attempt
            response = self.send(op.request)
            if response is None:
                op.transient["lambda_died"] += 1
            elif response.status >= 500:
                op.transient[f"http_{response.status}"] += 1
            elif response.status == 409 and _code(response.json) == "contention":
                op.transient["contention"] += 1
            elif op.request.stripe and response.status >= 300:
                op.transient[f"stripe_{response.status}"] += 1  # Stripe retries every non-2xx answer
            else:
                op.status = response.status
                op.body = response.json
                op.replayed = response.headers.get("idempotent-replayed") == "true"
                self._learn(op)
                return
            self._backoff(attempt)

    def send(self, request: Request) -> ApiResponse | None:
        if request.trigger is not None:
            return self._trigger(request.path, request.trigger)
        headers = {"content-type": "application/json", **request.headers}
        if request.stripe and request.raw_body is not None:
            headers["stripe-signature"] = self._stripe_signature(request.raw_body)
        if request.key is not None:
            headers["idempotency-key"] = request.key
        body = request.raw_body if request.raw_body is not None else _dumps(request.body)
        try:
            with faults(self.injector):
                return self.api.request(
                    request.method, request.path, claims=request.claims, headers=headers, body=body, query=request.query
                )
        except LambdaDied:
            # API Gateway answers 5xx; the next request gets a fresh environment (a cold start).
            self.died += 1
            self._discard_environments()
            return None
        except Exception as failed:  # the invoke itself failed (e.g. a cold start's import): a 502
            self.invoke_errors[f"{type(failed).__name__}: {failed}"[:200]] += 1
            self._discard_environments()
            return ApiResponse(502, {}, "", None)

    def _trigger(self, function: str, event: dict[str, Any]) -> ApiResponse | None:
        """A Cognito trigger: success is the event returned; any failure, Cognito retries."""
        from infra.lambdas import Environment

        try:
            with faults(self.injector):
                if function not in self.triggers:
                    self.triggers[function] = Environment(self.workload.stack.functions()[function])
                returned = self.triggers[function].invoke(event)
        except LambdaDied:
            self.died += 1
            self._discard_trigger(function)
            return None
        except Exception as failed:  # the trigger failed: Cognito answers the user with an error, retries
            self._discard_trigger(function)
            return ApiResponse(502, {}, type(failed).__name__, None)
        return ApiResponse(200, {}, "", {"returned_event": returned == event})

    def _discard_environments(self) -> None:
        """The environment is gone: the next request cold-starts. infra.lambdas keeps every module
        copy in sys.modules under a unique name; drop the old ones, or a long run grows by
        about a megabyte per cold start (the pool offers no close(), hence `_idle`)."""
        old, self.api = self.api, LocalApi(self.workload.stack)
        for environments in old.pool._idle.values():
            for environment in environments:
                sys.modules.pop(environment.module.__name__, None)

    def _discard_trigger(self, function: str) -> None:
        environment = self.triggers.pop(function, None)
        if environment is not None:
            sys.modules.pop(environment.module.__name__, None)

    def _backoff(self, attempt: int) -> None:
        time.sleep(self.rng.random() * min(CLIENT_RETRY_DELAY_MS_MAX, attempt * 2) / 1000)

    def _learn(self, op: Op) -> None:
        body = op.body if isinstance(op.body, dict) else {}
        if op.kind == "balance" and op.ok:
            self.versions[op.user_id] = int(body.get("version", 0))
        for entry in op.entries():
            self.versions[entry["user_id"]] = max(self.versions.get(entry["user_id"], 0), int(entry["seq"]))

    # ------------------------------------------------------------ choosing
    def key(self) -> str:
        self._keys += 1
        return f"{self.workload.run_id}-c{self.number}-{self._keys}"

    def next_op(self, number: int) -> Op:
        kind = self.rng.choices(self.workload.kinds, self.workload.weights)[0]
        maker = getattr(self, f"_op_{kind}")
        op: Op | None = maker(number)
        if op is None:  # nothing to repeat yet: a plain commitment instead
            op = self._op_commitment(number)
        return op

    def _user(self) -> str:
        return self.rng.choice(self.workload.users)

    def _prediction(self) -> str:
        return self.rng.choice(self.workload.predictions)

    def _op_commitment(self, number: int, *, if_match: bool = False) -> Op:
        user, key = self._user(), self.key()
        amount = self.rng.randint(1, 60)
        body = {"prediction_id": self._prediction(), "amount": amount, "metadata": {"chaos_op": key}}
        headers = {}
        if if_match:
            headers["if-match"] = f'"{self.versions.get(user, 0)}"'
        request = Request("POST", "/v1/commitments", user_claims(user), body, key, headers)
        kind = "commitment_if_match" if if_match else "commitment"
        return Op(self.number, number, kind, user, request, key, amount=-amount)

    def _op_commitment_settled(self, number: int) -> Op:
        """A commitment to a prediction that gets closed and settled during the run."""
        op = self._op_commitment(number)
        op.request.body["prediction_id"] = self.rng.choice(self.workload.settled)
        op.kind = "commitment_settled"
        return op

    def _op_close(self, number: int) -> Op:
        prediction = self.rng.choice(self.workload.settled)
        request = Request("POST", f"/v1/admin/predictions/{prediction}/close", admin_claims(self.number))
        return Op(self.number, number, "close", f"admin-{self.number}", request, None)

    def _op_settle(self, number: int) -> Op:
        prediction, key = self.rng.choice(self.workload.settled), self.key()
        path = f"/v1/admin/predictions/{prediction}/settlement"
        request = Request("POST", path, admin_claims(self.number), dict(SETTLE_BODY), key)
        return Op(self.number, number, "settle", f"admin-{self.number}", request, key)

    def _op_commitment_if_match(self, number: int) -> Op:
        return self._op_commitment(number, if_match=True)

    def _admin_entry(self, number: int, kind: str, amount: int, related: str | None) -> Op:
        user, key = self._user(), self.key()
        body: dict[str, Any] = {
            "type": kind,
            "amount": amount,
            "reason": f"chaos {kind}",
            "metadata": {"chaos_op": key},
        }
        if related is not None:
            body["related_id"] = related
        request = Request("POST", f"/v1/admin/accounts/{user}/entries", admin_claims(self.number), body, key)
        return Op(self.number, number, kind, user, request, key, amount=amount)

    def _op_grant(self, number: int) -> Op:
        return self._admin_entry(number, "grant", self.rng.randint(1, 120), None)

    def _op_payout(self, number: int) -> Op:
        return self._admin_entry(number, "payout", self.rng.randint(1, 150), self._prediction())

    def _op_refund(self, number: int) -> Op:
        return self._admin_entry(number, "refund", self.rng.randint(1, 60), self._prediction())

    def _op_adjustment(self, number: int) -> Op:
        amount = self.rng.randint(1, 80) * self.rng.choice((1, -1))
        return self._admin_entry(number, "adjustment", amount, None)

    def _repeatable(self) -> list[Op]:
        return list(self.repeatable)

    def _op_replay(self, number: int) -> Op | None:
        """The same request again, same key: must answer the original status and body, moving nothing."""
        candidates = [o for o in self._repeatable() if not o.kind.startswith("stripe")]
        if not candidates:
            return None
        origin = self.rng.choice(candidates)
        return Op(self.number, number, "replay", origin.user_id, origin.request, origin.key, origin=origin)

    def _op_key_reuse(self, number: int) -> Op | None:
        """The same key with another body: 422 idempotency_key_reused, moving nothing."""
        candidates = [
            o for o in self._repeatable() if o.kind in ("commitment", "grant", "payout", "refund", "adjustment")
        ]
        if not candidates:
            return None
        origin = self.rng.choice(candidates)
        body = json.loads(json.dumps(origin.request.body))
        body["amount"] = body["amount"] + 1 if body["amount"] != -1 else -2
        request = Request(
            origin.request.method, origin.request.path, origin.request.claims, body, origin.key, origin.request.headers
        )
        return Op(self.number, number, "key_reuse", origin.user_id, request, origin.key, origin=origin)

    def _op_balance(self, number: int) -> Op:
        user = self._user()
        return Op(self.number, number, "balance", user, Request("GET", "/v1/balance", user_claims(user)), None)

    def _op_history(self, number: int) -> Op:
        user = self._user()
        return Op(self.number, number, "history", user, Request("GET", "/v1/transactions", user_claims(user)), None)

    def _op_admin_balances(self, number: int) -> Op:
        users = ",".join(self.workload.users)
        request = Request("GET", "/v1/admin/balances", admin_claims(self.number), query={"user_ids": users})
        return Op(self.number, number, "admin_balances", self.workload.users[0], request, None)

    def _op_batch(self, number: int) -> Op:
        key = self.key()
        operations = []
        users = self.rng.sample(self.workload.users, k=min(len(self.workload.users), BATCH_OPERATIONS))
        for index, user in enumerate(users):
            kind = self.rng.choice(("grant", "payout", "adjustment"))
            amount = self.rng.randint(1, 40)
            if kind == "adjustment" and self.rng.random() < 0.5:
                amount = -amount
            operation: dict[str, Any] = {
                "user_id": user,
                "type": kind,
                "amount": amount,
                "metadata": {"chaos_op": key, "chaos_index": str(index)},
            }
            if kind == "payout":
                operation["related_id"] = self._prediction()
            operations.append(operation)
        body = {"operations": operations, "reason": "chaos batch"}
        request = Request("POST", "/v1/admin/batches", admin_claims(self.number), body, key)
        return Op(self.number, number, "batch", users[0], request, key, amount=sum(o["amount"] for o in operations))

    def _op_reversal(self, number: int) -> Op | None:
        """Reverse a recent entry of any client (sometimes one already reversed: 409 already_reversed)."""
        written = self.workload.recent_entries()
        if not written:
            return None
        entry = self.rng.choice(written)
        key = self.key()
        request = Request(
            "POST",
            f"/v1/admin/entries/{entry['entry_id']}/reversal",
            admin_claims(self.number),
            {"reason": f"chaos reversal {key}"},
            key,
        )
        return Op(self.number, number, "reversal", entry["user_id"], request, key, amount=-int(entry["amount"]))

    def _op_audit(self, number: int) -> Op | None:
        """An admin audits a hot account while others write to it: never a false inconsistency."""
        if self._whole_chain_reads >= WHOLE_CHAIN_READS_PER_CLIENT_MAX:
            return None
        self._whole_chain_reads += 1
        user = self._user()
        request = Request("GET", f"/v1/admin/accounts/{user}/audit", admin_claims(self.number))
        return Op(self.number, number, "audit", user, request, None)

    def _op_repair(self, number: int) -> Op | None:
        """An admin repairs a hot account while others write to it: nothing to repair, nothing changed."""
        if self._whole_chain_reads >= WHOLE_CHAIN_READS_PER_CLIENT_MAX:
            return None
        self._whole_chain_reads += 1
        user = self._user()
        body = {"reason": "chaos: repair under load"}
        request = Request("POST", f"/v1/admin/accounts/{user}/repair", admin_claims(self.number), body, self.key())
        return Op(self.number, number, "repair", user, request, None)

    def _op_signup(self, number: int) -> Op:
        """Cognito confirms a sign-up of a hot account (again: triggers are redelivered): one welcome grant."""
        user = self._user()
        event = {
            "version": "1",
            "region": LOCAL_REGION,
            "userPoolId": f"{LOCAL_REGION}_chaos",
            "userName": user,
            "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "chaos"},
            "triggerSource": "PostConfirmation_ConfirmSignUp",
            "request": {"userAttributes": {"sub": user, "email": f"{user}@example.com", "email_verified": "true"}},
            "response": {},
        }
        request = Request("INVOKE", self.workload.features.signup or "", None, trigger=event)
        return Op(self.number, number, "signup", user, request, None)

    # ------------------------------------------------------------ Stripe
    def _stripe_signature(self, payload: str) -> str:
        timestamp = int(time.time())
        secret = self.workload.stripe_secret or ""
        signature = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
        return f"t={timestamp},v1={signature}"

    def _stripe_request(self, event: dict[str, Any]) -> Request:
        payload = json.dumps(event, separators=(",", ":"))
        return Request("POST", "/v1/webhooks/stripe", None, None, None, raw_body=payload, stripe=True)

    def _op_stripe_purchase(self, number: int) -> Op:
        user = self._user()
        serial = self.key().replace("-", "_")  # Stripe ids are [A-Za-z0-9_]
        package = self.rng.choice(self.workload.packages)
        payment = f"pi_{serial}"
        session = {
            "id": f"cs_{serial}",
            "object": "checkout.session",
            "payment_status": "paid",
            "payment_intent": payment,
            **_catalog_price(package),
            "client_reference_id": user,
            "metadata": {"user_id": user, "package_id": package},
        }
        kind = self.rng.choice(("checkout.session.completed", "checkout.session.async_payment_succeeded"))
        event = _stripe_event(f"evt_{serial}", kind, session)
        op = Op(self.number, number, "stripe_purchase", user, self._stripe_request(event), None)
        op.stripe = {"payment": payment, "session": session["id"], "package": package, "event": event}
        return op

    def _purchases(self) -> list[Op]:
        return self.workload.recent_purchases()

    def _op_stripe_redelivery(self, number: int) -> Op | None:
        """The same event again (Stripe retries), or the other event for the same session."""
        purchases = self._purchases()
        if not purchases:
            return None
        origin = self.rng.choice(purchases)
        assert origin.stripe is not None
        event = dict(origin.stripe["event"])
        if self.rng.random() < 0.3:  # both "completed" and "async_payment_succeeded" for one session
            other = (
                "checkout.session.async_payment_succeeded"
                if event["type"] == "checkout.session.completed"
                else "checkout.session.completed"
            )
            # One derived id (ids are [A-Za-z0-9_]) for every redelivery of this origin, with the same
            # content: a copy made a second later would be an id resent changed (409, retried forever).
            event = _stripe_event(f"{event['id']}_2", other, event["data"]["object"], created=event["created"])
        op = Op(self.number, number, "stripe_redelivery", origin.user_id, self._stripe_request(event), None)
        op.origin = origin
        op.stripe = dict(origin.stripe)
        return op

    def _op_stripe_refund(self, number: int) -> Op | None:
        purchases = self._purchases()
        if not purchases:
            return None
        origin = self.rng.choice(purchases)
        assert origin.stripe is not None
        serial = self.key().replace("-", "_")
        refunded = self.rng.choice((250, 500, 999))
        charge = {
            "id": f"ch_{origin.stripe['payment']}",
            "object": "charge",
            "payment_intent": origin.stripe["payment"],
            "amount": 999,
            "amount_captured": 999,
            "amount_refunded": refunded,
            "currency": "usd",
            "refunded": refunded == 999,
            "metadata": {"user_id": origin.user_id, "package_id": origin.stripe["package"]},
        }
        event = _stripe_event(f"evt_{serial}", "charge.refunded", charge)
        op = Op(self.number, number, "stripe_refund", origin.user_id, self._stripe_request(event), None)
        op.origin = origin
        op.stripe = dict(origin.stripe)
        return op

    def _op_stripe_dispute(self, number: int) -> Op | None:
        purchases = self._purchases()
        if not purchases:
            return None
        origin = self.rng.choice(purchases)
        assert origin.stripe is not None
        serial = self.key().replace("-", "_")
        dispute = {
            "id": f"dp_{serial}",
            "object": "dispute",
            "charge": f"ch_{origin.stripe['payment']}",
            "payment_intent": origin.stripe["payment"],
            "amount": 999,
            "currency": "usd",
            "reason": "fraudulent",
            "status": "needs_response",
        }
        event = _stripe_event(f"evt_{serial}", "charge.dispute.created", dispute)
        op = Op(self.number, number, "stripe_dispute", origin.user_id, self._stripe_request(event), None)
        op.origin = origin
        op.stripe = dict(origin.stripe)
        return op


def _stripe_event(event_id: str, kind: str, obj: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """A Stripe event; one id always has one content (Stripe never resends an id changed)."""
    return {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": int(time.time()) if created is None else created,
        "livemode": False,
        "type": kind,
        "data": {"object": obj},
    }


def _code(body: Any) -> str | None:
    return body.get("code") if isinstance(body, dict) else None


def _dumps(body: Any) -> str | None:
    return None if body is None else json.dumps(body)


# ---------------------------------------------------------------- checks
@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Report:
    seed: int
    engine: str
    clients: int
    fault_rate: float
    features: list[str]
    ops: list[Op]
    faults: Counter[str]
    died: int
    elapsed_s: float
    checks: list[Check]
    accounts: int = 0
    entries: int = 0
    invoke_errors: Counter[str] = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def counts(self) -> dict[str, Counter[str]]:
        by_kind: dict[str, Counter[str]] = defaultdict(Counter)
        for op in self.ops:
            by_kind[op.kind][str(op.status) if op.status is not None else "no answer"] += 1
        return dict(sorted(by_kind.items()))

    def render(self) -> str:
        rate = len(self.ops) / max(self.elapsed_s, 0.001)
        lines = [
            f"chaos: seed={self.seed} engine={self.engine} clients={self.clients} fault_rate={self.fault_rate} "
            f"ops={len(self.ops)} elapsed={self.elapsed_s:.1f}s ({rate:.0f} ops/s)",
            f"  drives: {', '.join(self.features)}",
            f"  ledger: {self.accounts} accounts, {self.entries} entries",
            "  operations (final status: count):",
        ]
        for kind, statuses in self.counts().items():
            total = sum(statuses.values())
            detail = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
            lines.append(f"    {kind:<22} {total:>6}  ({detail})")
        attempts = sum(op.attempts for op in self.ops)
        transient: Counter[str] = Counter()
        for op in self.ops:
            transient.update(op.transient)
        lines.append(f"  requests sent: {attempts} (retries: {attempts - len(self.ops)})")
        lines.append(
            "  transient answers clients retried: "
            + (", ".join(f"{k}: {v}" for k, v in sorted(transient.items())) or "none")
        )
        lines.append(
            f"  faults injected: {sum(self.faults.values())} ("
            + ", ".join(f"{k}: {self.faults.get(k, 0)}" for k in FAULT_KINDS)
            + ")"
        )
        if self.invoke_errors:
            lines.append(
                f"  invokes that failed outside a handler (answered 502, retried): {sum(self.invoke_errors.values())}; "
                + "; ".join(f"{n} x {e}" for e, n in self.invoke_errors.most_common(3))
            )
        lines.append("  invariants:")
        for check in self.checks:
            lines.append(f"    [{'ok' if check.ok else 'FAIL'}] {check.name}: {check.detail}")
        lines.append(f"chaos: {'PASS' if self.ok else 'FAIL'} (seed {self.seed})")
        return "\n".join(lines)


def _scan(dynamodb: Any, table: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        items.extend(page.get("Items", []))
    return items


def _plain(value: dict[str, Any]) -> Any:
    """A DynamoDB attribute value as plain Python (numbers as int)."""
    (kind, inner), *_ = value.items()
    if kind == "S":
        return inner
    if kind == "N":
        return int(inner)
    if kind == "BOOL":
        return bool(inner)
    if kind == "NULL":
        return None
    if kind == "M":
        return {k: _plain(v) for k, v in inner.items()}
    if kind == "L":
        return [_plain(v) for v in inner]
    return inner


def _row(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _plain(v) for k, v in item.items()}


class Verifier:
    """The checks after a run, made straight on the tables and through the API, faults off."""

    def __init__(self, stack: Stack, dynamodb: Any, ops: list[Op], features: Features, api: LocalApi) -> None:
        self.stack = stack
        self.dynamodb = dynamodb
        self.ops = ops
        self.features = features
        self.api = api
        tables = {k: v["TableName"] for k, v in stack.table_definitions().items()}
        self.accounts = {a["user_id"]: a for a in map(_row, _scan(dynamodb, tables["AccountsTable"]))}
        self.entries = [_row(i) for i in _scan(dynamodb, tables["EntriesTable"])]
        self.idempotency = [_row(i) for i in _scan(dynamodb, tables["IdempotencyTable"])]
        self.by_id = {e["entry_id"]: e for e in self.entries}
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        self.check(self.ledger_consistent)
        self.check(self.no_negative_balance)
        self.check(self.totals_match)
        if self.features.reconcile:
            self.check(self.reconciliation_clean)
        self.check(self.key_moved_at_most_once)
        self.check(self.stored_responses_match_ledger)
        self.check(self.every_entry_explained)
        self.check(self.acknowledged_in_ledger)
        self.check(self.refused_moved_nothing)
        self.check(self.replays_identical)
        self.check(self.history_shows_acknowledged)
        if self.features.reversals:
            self.check(self.reversed_at_most_once)
        if self.features.stripe:
            self.check(self.payment_credited_at_most_once)
        if self.features.audit:
            self.check(self.audits_and_repairs_under_load)
        if self.features.signup:
            self.check(self.welcome_granted_once)
        if self.features.balances:
            self.check(self.balance_summaries_sane)
        if self.features.predictions:
            self.check(self.settlements_exact)
        self.check(self.unknown_outcomes)
        return self.checks

    def check(self, fn: Callable[[], str]) -> None:
        name = fn.__name__
        try:
            detail = fn()
        except InvariantBroken as failed:
            self.checks.append(Check(name, False, str(failed) or "assertion failed"))
            return
        self.checks.append(Check(name, True, detail))

    # ------------------------------------------------------------ the ledger itself
    def users(self) -> set[str]:
        return set(self.accounts) | {e["user_id"] for e in self.entries}

    def ledger_consistent(self) -> str:
        failures = []
        for user in sorted(self.users()):
            try:
                assert_account_consistent(self.dynamodb, self.stack, user)
            except InvariantBroken as broken:
                failures.append(f"{user}: {broken}")
        require(not failures, "; ".join(failures[:5]))
        return f"{len(self.users())} accounts: seq 1..n, chain, version = n, balance = last balance_after"

    def no_negative_balance(self) -> str:
        negative = [u for u, a in self.accounts.items() if int(a.get("balance", 0)) < 0]
        negative += [f"{e['user_id']}#{e['seq']}" for e in self.entries if e["balance_after"] < 0]
        require(not negative, f"below zero: {negative[:5]}")
        lowest = min((int(a.get("balance", 0)) for a in self.accounts.values()), default=0)
        return f"lowest balance {lowest}; no balance_after below zero in {len(self.entries)} entries"

    def totals_match(self) -> str:
        balances = sum(int(a.get("balance", 0)) for a in self.accounts.values())
        moved = sum(e["amount"] for e in self.entries)
        require(balances == moved, f"sum of balances {balances} != sum of entry amounts {moved}")
        return f"sum of balances = sum of entry amounts = {balances}"

    def reconciliation_clean(self) -> str:
        from infra.lambdas import Environment

        spec = self.stack.functions()[self.features.reconcile or ""]
        event = {
            "version": "0",
            "id": "chaos-reconcile",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": LOCAL_REGION,
            "resources": [],
            "detail": {},
        }
        report = Environment(spec).invoke(event)
        if isinstance(report, dict) and isinstance(report.get("body"), str):
            report = json.loads(report["body"])
        require(isinstance(report, dict), f"reconcile returned {type(report).__name__}")
        findings = report.get("inconsistencies") or []
        wrong = [f for f in findings if f.get("kind") not in RECONCILE_NOTICE_KINDS]
        require(report.get("healthy") is True and not wrong, f"reconciliation found {wrong[:5]}")
        unrecovered = sum(int(e.get("unrecovered") or 0) for e in self.entries if e["type"] == "chargeback")
        reported = int(report.get("unrecovered_chargebacks") or 0)
        require(reported == unrecovered, f"report says {reported} tokens unrecovered, the entries {unrecovered}")
        return (
            f"healthy, no inconsistency; {report.get('accounts_checked')} accounts, "
            f"{report.get('entries_checked')} entries, {report.get('tokens_outstanding')} tokens outstanding, "
            f"{reported} tokens of chargebacks unrecovered (a notice)"
        )

    # ------------------------------------------------------------ exactly once
    def _entries_by_key(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for entry in self.entries:
            key = (entry.get("metadata") or {}).get("chaos_op")
            if key:
                found[key].append(entry)
        return found

    def _expected_per_key(self) -> dict[str, int]:
        expected: dict[str, int] = {}
        for op in self.ops:
            if op.key is None or op.kind in ("replay", "key_reuse"):
                continue
            expected[op.key] = len(op.request.body["operations"]) if op.kind == "batch" else 1
        return expected

    def key_moved_at_most_once(self) -> str:
        by_key = self._entries_by_key()
        expected = self._expected_per_key()
        twice = [k for k, found in by_key.items() if len(found) > expected.get(k, 0)]
        require(not twice, f"keys that moved tokens more than once: {twice[:5]}")
        batches_split = [
            k
            for k, found in by_key.items()
            if expected.get(k, 1) > 1 and len(found) != expected[k]  # all or nothing
        ]
        require(not batches_split, f"batches partly applied: {batches_split[:5]}")
        return f"{len(by_key)} of {len(expected)} keys moved tokens, each once"

    def stored_responses_match_ledger(self) -> str:
        """Count entries per key through the stored responses: each names exactly that key's entries."""
        by_key = self._entries_by_key()
        problems = []
        records = 0
        for record in self.idempotency:
            if "response" not in record:
                continue  # a guard, not a stored response
            records += 1
            key = str(record["pk"]).rsplit("|", 1)[-1]
            body = json.loads(record["response"])
            named = [body["entry"]] if isinstance(body.get("entry"), dict) else list(body.get("entries") or [])
            for entry in named:
                stored = self.by_id.get(entry["entry_id"])
                if stored is None:
                    problems.append(f"{key}: stored response names {entry['entry_id']}, not in the ledger")
                elif any(stored.get(f) != entry.get(f) for f in ("user_id", "seq", "amount", "balance_after", "type")):
                    problems.append(f"{key}: stored response differs from entry {entry['entry_id']}")
            if key in by_key and {e["entry_id"] for e in by_key[key]} != {e["entry_id"] for e in named}:
                problems.append(f"{key}: ledger has {len(by_key[key])} entries, stored response names {len(named)}")
        keyed = {k for k in by_key}
        unrecorded = keyed - {str(r["pk"]).rsplit("|", 1)[-1] for r in self.idempotency if "response" in r}
        if unrecorded:
            problems.append(f"entries without an idempotency record: {sorted(unrecorded)[:5]}")
        require(not problems, "; ".join(problems[:5]))
        return f"{records} stored responses each name exactly their key's entries"

    def _settled_predictions(self) -> set[str]:
        return {op.request.path.split("/")[4] for op in self.ops if op.kind == "settle" and op.ok}

    def settlements_exact(self) -> str:
        """Each settled prediction: nothing committed after its close, every user refunded exactly once
        what they put in net of reversals, the settlement completed and its totals agreeing."""
        problems: list[str] = []
        settled = self._settled_predictions()
        for prediction in sorted(settled):
            response = self.api.request("GET", f"/v1/admin/predictions/{prediction}/settlement", claims=admin_claims(0))
            require(response.status == 200, f"{prediction}: GET settlement {response.status}")
            settlement = response.json
            if settlement["status"] != "completed":
                problems.append(f"{prediction}: settlement {settlement['status']}")
            put_in: Counter[str] = Counter()
            refunded: Counter[str] = Counter()
            refunds: Counter[str] = Counter()
            for entry in self.entries:
                if entry.get("related_id") != prediction:
                    continue
                if entry["type"] == "commitment":
                    put_in[entry["user_id"]] -= entry["amount"]
                    if entry["created_at"] > settlement["closed_at"]:
                        problems.append(f"{prediction}: commitment {entry['entry_id']} after the close")
                elif entry["type"] == "reversal":
                    put_in[entry["user_id"]] -= entry["amount"]
                elif entry["type"] == "refund":
                    refunded[entry["user_id"]] += entry["amount"]
                    refunds[entry["user_id"]] += 1
            expected = {u: n for u, n in put_in.items() if n > 0}
            if dict(refunded) != expected:
                problems.append(f"{prediction}: refunded {dict(refunded)} != put in {expected}")
            if any(n > 1 for n in refunds.values()):
                problems.append(f"{prediction}: a user refunded more than once")
            total = sum(expected.values())
            if (settlement["taken_in"], settlement["paid_total"]) != (total, total):
                problems.append(f"{prediction}: taken_in {settlement['taken_in']}, paid {settlement['paid_total']}")
        require(not problems, "; ".join(problems[:5]))
        closes = sum(1 for op in self.ops if op.kind == "close" and op.ok)
        late = sum(1 for op in self.ops if op.kind == "commitment_settled" and _code(op.body) == "prediction_closed")
        return (
            f"{len(settled)} predictions settled ({closes} closes): every user refunded once what they put in;"
            f" {late} commitments refused after a close, none written after it"
        )

    def every_entry_explained(self) -> str:
        """No token from nowhere: each entry comes from a request some client sent."""
        sent = {op.key for op in self.ops if op.key}
        payments = {op.stripe["payment"] for op in self.ops if op.stripe}
        orphans = []
        for entry in self.entries:
            key = (entry.get("metadata") or {}).get("chaos_op")
            if key in sent:
                continue
            if entry["type"] == "reversal" and entry.get("reverses") in self.by_id:
                continue
            if entry.get("actor") == WELCOME_GRANT_ACTOR and entry["user_id"] in self._signed_up():
                continue
            if entry["type"] in ("purchase", "chargeback") and entry.get("related_id") in payments:
                continue
            by_settlement = entry["type"] == "refund" and str(entry.get("actor", "")).startswith("settlement:")
            if by_settlement and entry.get("related_id") in self._settled_predictions():
                continue
            orphans.append(f"{entry['user_id']}#{entry['seq']} {entry['type']} {entry['amount']}")
        require(not orphans, f"entries no client asked for: {orphans[:5]}")
        return f"all {len(self.entries)} entries trace back to a request"

    def acknowledged_in_ledger(self) -> str:
        missing = []
        count = 0
        for op in self.ops:
            for entry in op.entries():
                count += 1
                stored = self.by_id.get(entry["entry_id"])
                if stored is None:
                    missing.append(f"{op.kind} {op.key}: {entry['entry_id']} missing")
                    continue
                for name in ("user_id", "seq", "type", "amount", "balance_after", "counterparty", "created_at"):
                    if stored.get(name) != entry.get(name):
                        missing.append(f"{op.kind} {op.key}: {name} {entry.get(name)!r} != stored {stored.get(name)!r}")
        require(not missing, "; ".join(missing[:5]))
        acknowledged = sum(1 for op in self.ops if op.ok and op.request.method == "POST")
        return f"{acknowledged} acknowledged writes, {count} entries answered, all in the ledger as answered"

    def refused_moved_nothing(self) -> str:
        by_key = self._entries_by_key()
        acknowledged = {op.key for op in self.ops if op.ok and op.key}
        moved = [
            f"{op.kind} {op.key} ({op.status} {_code(op.body)})"
            for op in self.ops
            if op.definite and not op.ok and op.key and op.key not in acknowledged and op.key in by_key
        ]
        require(not moved, f"refused (4xx) yet in the ledger: {moved[:5]}")
        refused = sum(1 for op in self.ops if op.definite and not op.ok)
        codes = Counter(_code(op.body) for op in self.ops if op.definite and not op.ok)
        return f"{refused} refusals moved nothing ({', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))})"

    def replays_identical(self) -> str:
        problems = []
        replays = [op for op in self.ops if op.kind == "replay"]
        for op in replays:
            assert op.origin is not None
            if op.status != op.origin.status or op.body != op.origin.body or not op.replayed:
                problems.append(f"{op.key}: {op.status} replayed={op.replayed} vs original {op.origin.status}")
        reuses = [op for op in self.ops if op.kind == "key_reuse"]
        for op in reuses:
            if op.status != 422 or _code(op.body) != "idempotency_key_reused":
                problems.append(f"{op.key}: reuse answered {op.status} {_code(op.body)}")
        require(not problems, "; ".join(problems[:5]))
        return f"{len(replays)} replays answered as the original; {len(reuses)} key reuses refused with 422"

    def history_shows_acknowledged(self) -> str:
        """Every client that got a definite answer sees its entries in the user's own history."""
        seen: dict[str, dict[str, dict[str, Any]]] = {}
        for user in sorted(self.users()):
            items: dict[str, dict[str, Any]] = {}
            cursor: str | None = None
            for _ in range(HISTORY_PAGES_MAX):
                query = {"limit": str(HISTORY_PAGE)}
                if cursor:
                    query["cursor"] = cursor
                response = self.api.request("GET", "/v1/transactions", claims=user_claims(user), query=query)
                require(response.status == 200, f"history of {user}: {response.status} {response.body[:200]}")
                for item in response.json["items"]:
                    items[item["entry_id"]] = item
                cursor = response.json.get("next_cursor")
                if not cursor:
                    break
            seen[user] = items
        problems = []
        checked = 0
        for op in self.ops:
            for entry in op.entries():
                checked += 1
                shown = seen.get(entry["user_id"], {}).get(entry["entry_id"])
                if shown != entry:
                    problems.append(f"{op.kind} {op.key}: {entry['entry_id']} {'differs' if shown else 'not shown'}")
        counts = {u: len(items) for u, items in seen.items()}
        ledger_counts = Counter(e["user_id"] for e in self.entries)
        short = [u for u, n in counts.items() if n != ledger_counts.get(u, 0)]
        if short:
            problems.append(f"history length differs from the ledger for {short[:5]}")
        require(not problems, "; ".join(problems[:5]))
        return f"{checked} acknowledged entries shown, identical, in their users' histories"

    def reversed_at_most_once(self) -> str:
        reversals = Counter(e["reverses"] for e in self.entries if e["type"] == "reversal" and e.get("reverses"))
        twice = [k for k, n in reversals.items() if n > 1]
        require(not twice, f"entries reversed more than once: {twice[:5]}")
        return f"{len(reversals)} entries reversed, each once"

    def payment_credited_at_most_once(self) -> str:
        payments = {op.stripe["payment"]: op for op in self.ops if op.kind == "stripe_purchase" and op.stripe}
        credited: Counter[str] = Counter()
        purchased: dict[str, int] = {}
        clawed: Counter[str] = Counter()
        for entry in self.entries:
            payment = str(entry.get("related_id") or "")
            if payment not in payments or entry.get("counterparty") != "stripe":
                continue
            if entry["type"] == "purchase":
                credited[payment] += 1
                purchased[payment] = entry["amount"]
            elif entry["type"] == "chargeback":
                clawed[payment] += -entry["amount"] + int(entry.get("unrecovered") or 0)
        # An admin reversal of a purchase and Stripe's refunds/disputes take it back at most once in total.
        purchase_payment = {e["entry_id"]: str(e["related_id"]) for e in self.entries if e["type"] == "purchase"}
        reversed_purchases = 0
        for entry in self.entries:
            payment = purchase_payment.get(str(entry.get("reverses") or ""), "")
            if entry["type"] == "reversal" and payment in payments:
                clawed[payment] += -entry["amount"]
                reversed_purchases += 1
        twice = [p for p, n in credited.items() if n > 1]
        require(not twice, f"payments credited more than once: {twice[:5]}")
        over = [p for p, n in clawed.items() if n > purchased.get(p, 0)]
        require(not over, f"payments clawed back beyond their purchase: {over[:5]}")
        acknowledged = [p for p, op in payments.items() if op.ok]
        uncredited = [p for p in acknowledged if credited[p] != 1]
        require(not uncredited, f"acknowledged purchases not credited: {uncredited[:5]}")
        recovered = sum(-e["amount"] for e in self.entries if e["type"] == "chargeback")
        return (
            f"{len(credited)} payments credited once each; {len(clawed)} clawed back within their purchase "
            f"({recovered} tokens recovered, {reversed_purchases} purchases reversed by an admin)"
        )

    def balance_summaries_sane(self) -> str:
        """Admin balance summaries read during the writes: one row per user asked, none negative, total = sum."""
        problems = []
        reads = [op for op in self.ops if op.kind == "admin_balances"]
        for op in reads:
            body = op.body if isinstance(op.body, dict) else {}
            rows = body.get("balances") or []
            asked = (op.request.query or {}).get("user_ids", "").split(",")
            if op.status != 200 or [r["user_id"] for r in rows] != asked:
                problems.append(f"{op.status}: {str(body)[:200]}")
            elif any(r["balance"] < 0 for r in rows) or body.get("total") != sum(r["balance"] for r in rows):
                problems.append(f"rows {rows} total {body.get('total')}")
        require(not problems, "; ".join(problems[:5]))
        return f"{len(reads)} summaries read during the writes: none negative, totals add up"

    def _signed_up(self) -> set[str]:
        return {op.user_id for op in self.ops if op.kind == "signup"}

    def welcome_granted_once(self) -> str:
        grants = Counter(e["user_id"] for e in self.entries if e.get("actor") == WELCOME_GRANT_ACTOR)
        twice = [u for u, n in grants.items() if n > 1]
        require(not twice, f"welcome grant given more than once to {twice[:5]}")
        confirmed = {op.user_id for op in self.ops if op.kind == "signup" and op.ok}
        tokens = int(os.environ.get("WELCOME_GRANT_TOKENS", "0"))
        missing = sorted(u for u in confirmed if tokens and grants[u] != 1)
        require(not missing, f"confirmed sign-ups without their welcome grant: {missing[:5]}")
        signups = sum(1 for op in self.ops if op.kind == "signup")
        return f"{signups} sign-up triggers (redelivered) for {len(confirmed)} users: {sum(grants.values())} grants"

    def audits_and_repairs_under_load(self) -> str:
        """The per-account audit saw no inconsistency mid-run; repair found nothing to repair."""
        problems = []
        pending = 0
        audits = [op for op in self.ops if op.kind == "audit" and op.ok]
        for op in audits:
            body = op.body if isinstance(op.body, dict) else {}
            found = [f for f in body.get("inconsistencies") or [] if f.get("kind") not in RECONCILE_NOTICE_KINDS]
            wrong = [f for f in found if f.get("kind") not in AUDIT_PENDING_KINDS]
            pending += len(found) - len(wrong)
            if wrong or (body.get("consistent") is not True and not found):
                problems.append(f"audit of {op.user_id} mid-run: {body.get('inconsistencies')}")
        repairs = [op for op in self.ops if op.kind == "repair" and op.ok]
        for op in repairs:
            body = op.body if isinstance(op.body, dict) else {}
            if body.get("repaired") is not False:
                problems.append(f"repair of {op.user_id} changed a consistent account: {body}")
        refused = [op for op in self.ops if op.kind in ("audit", "repair") and op.definite and not op.ok]
        problems += [f"{op.kind} of {op.user_id} answered {op.status} {_code(op.body)}" for op in refused]
        require(not problems, "; ".join(problems[:5]))
        return (
            f"{len(audits)} audits during writes: no ledger inconsistency ({pending} saw a purchase whose "
            f"Stripe event record was not written yet); {len(repairs)} repairs changed nothing"
        )

    def unknown_outcomes(self) -> str:
        unknown = [op for op in self.ops if not op.definite]
        by_key = self._entries_by_key()
        landed = sum(1 for op in unknown if op.key in by_key)
        require(
            len(unknown) <= len(self.ops) // 100 + 1,
            f"{len(unknown)} operations never got a definite answer in {CLIENT_ATTEMPTS_MAX} tries",
        )
        return f"{len(unknown)} operations without a definite answer ({landed} of them landed, once)"


# ---------------------------------------------------------------- the run
@contextlib.contextmanager
def world(engine: str, stack: Stack, secrets: dict[str, str]) -> Iterator[Any]:
    """Tables, buckets and secrets of the template on moto, with DynamoDB on `engine`."""
    import boto3
    from moto import mock_aws

    from infra.world import create_buckets, create_event_buses, create_secrets, create_tables, make_moto_atomic

    _environment_defaults(stack)
    make_moto_atomic()
    with contextlib.ExitStack() as stack_of_contexts:
        if engine == "dynamodb-local":
            from infra.dynamodb_local import DynamoDBLocal

            server = stack_of_contexts.enter_context(DynamoDBLocal())
            previous = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = server.endpoint_url
            stack_of_contexts.callback(_restore_env, "AWS_ENDPOINT_URL_DYNAMODB", previous)
        # The sign-up trigger grants welcome tokens in this world (the template's default is none).
        stack_of_contexts.callback(_restore_env, "WELCOME_GRANT_TOKENS", os.environ.get("WELCOME_GRANT_TOKENS"))
        os.environ["WELCOME_GRANT_TOKENS"] = str(CHAOS_WELCOME_GRANT_TOKENS)
        stack_of_contexts.enter_context(mock_aws())
        dynamodb = boto3.client("dynamodb", region_name=LOCAL_REGION)
        create_tables(stack, dynamodb)
        create_buckets(stack, boto3.client("s3", region_name=LOCAL_REGION))
        create_secrets(stack, boto3.client("secretsmanager", region_name=LOCAL_REGION), secrets)
        create_event_buses(stack, boto3.client("events", region_name=LOCAL_REGION))
        create_queues(stack, boto3.client("sqs", region_name=LOCAL_REGION))
        yield dynamodb


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _environment_defaults(stack: Stack) -> None:
    defaults = {
        **LOCAL_AWS_ENVIRONMENT,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    }
    for name, value in {**stack.environment(), **defaults}.items():
        os.environ.setdefault(name, value)


def stripe_secret_values(stack: Stack, seed: int) -> tuple[dict[str, str], str | None]:
    """A webhook signing secret for the secret the template hands to the Stripe function, if any."""
    for spec in stack.functions().values():
        name = spec.environment.get("STRIPE_WEBHOOK_SECRET_NAME")
        if not name:
            continue
        for logical_id in stack.of_type("AWS::SecretsManager::Secret"):
            if name in (stack.physical_name(logical_id), stack.arn(logical_id)):
                secret = "whsec_" + base64.b32encode(hashlib.sha256(f"chaos:{seed}".encode()).digest()).decode()[:32]
                return {logical_id: secret}, secret
    return {}, None


def run(
    *,
    seed: int,
    ops: int,
    clients: int,
    fault_rate: float,
    engine: str = "moto",
    accounts: int = HOT_ACCOUNTS,
    stack: Stack | None = None,
    log: Callable[[str], None] | None = None,
) -> Report:
    """One run: build the world, drive the workload with faults, verify with faults off."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}")
    stack = stack or Stack()
    install_fault_hook()
    secrets, stripe_secret = stripe_secret_values(stack, seed)
    with world(engine, stack, secrets) as dynamodb:
        probe = LocalApi(stack)
        features = Features.of(stack, probe)
        workload = Workload(seed, stack, features, stripe_secret, accounts)
        accounts_table = stack.physical_name("AccountsTable")
        per_client = [ops // clients + (1 if i < ops % clients else 0) for i in range(clients)]
        workers = [Client(i, workload, n, fault_rate, accounts_table) for i, n in enumerate(per_client)]
        started = time.monotonic()
        failures: list[BaseException] = []

        def drive(worker: Client) -> None:
            try:
                worker.run()
            except BaseException as crashed:  # reported after the run; the checks still run
                failures.append(crashed)

        # Outbound events: the stream consumer runs through the workload, faults at EventBridge.
        events = EventsUnderFaults(stack, engine, seed=seed, fault_rate=fault_rate)
        if events.declared(stack):
            events.start()
        # The settlement queue: its worker pays refunds while the clients go on committing.
        pump = QueuePump(stack, LocalApi(stack).pool).start() if features.predictions else None
        threads = [threading.Thread(target=drive, args=(w,), name=f"chaos-client-{w.number}") for w in workers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=PROGRESS_EVERY_S)
            while thread.is_alive():
                if log:
                    done = sum(len(w.done) for w in workers)
                    log(f"chaos: {done}/{ops} operations after {time.monotonic() - started:.0f}s")
                thread.join(timeout=PROGRESS_EVERY_S)
        elapsed = time.monotonic() - started
        if pump is not None:
            pump.stop()
            pump.drain()  # what is left of the settlements, before the checks
        if log:
            log(f"chaos: workload done in {elapsed:.1f}s; verifying")
        events_caught_up = events.finish() if events.mappings else True
        all_ops = [op for w in workers for op in w.done]
        injected: Counter[str] = Counter()
        for worker in workers:
            injected.update(worker.injector.injected)
        injected.update(events.injected)
        verifier = Verifier(stack, dynamodb, all_ops, features, probe)
        checks = verifier.run()
        if events.mappings:
            checks.append(_events_check(events, verifier.entries, caught_up=events_caught_up))
        if failures:
            checks.insert(0, Check("clients_ran", False, f"{len(failures)} clients crashed: {failures[0]!r}"))
        return Report(
            seed=seed,
            engine=engine,
            clients=clients,
            fault_rate=fault_rate,
            features=features.names(),
            ops=all_ops,
            faults=injected,
            died=sum(w.died for w in workers),
            elapsed_s=elapsed,
            checks=checks,
            accounts=len(verifier.users()),
            entries=len(verifier.entries),
            invoke_errors=sum((w.invoke_errors for w in workers), Counter()),
        )


def _events_check(events: EventsUnderFaults, entries: list[dict[str, Any]], *, caught_up: bool) -> Check:
    name = "events_published_in_order"
    if not caught_up:
        return Check(name, False, "the stream consumer did not catch up with the stream")
    try:
        return Check(name, True, events.check(entries))
    except AssertionError as failed:
        return Check(name, False, str(failed))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.chaos", description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=None, help="seed (default: random, printed)")
    parser.add_argument("--ops", type=int, default=2000, help="operations in total, over all clients")
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="chance that a DynamoDB call fails")
    parser.add_argument("--engine", choices=ENGINES, default="moto")
    parser.add_argument("--accounts", type=int, default=HOT_ACCOUNTS, help="hot accounts the clients share")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="also the functions' logs and metrics (JSON lines), as Lambda's"
    )
    args = parser.parse_args(argv)
    # Quiet by default: every injected fault would log a stack trace, and EMF lines would bury the report.
    os.environ["POWERTOOLS_LOG_LEVEL"] = "INFO" if args.verbose else "CRITICAL"
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "false" if args.verbose else "true"
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1, 2**31)
    if args.ops < 1 or args.clients < 1 or args.accounts < 1 or not 0 <= args.fault_rate < 1:
        parser.error("need ops, clients and accounts >= 1 and 0 <= fault-rate < 1")
    print(f"chaos: seed={seed} ops={args.ops} clients={args.clients} fault_rate={args.fault_rate} engine={args.engine}")
    sys.stdout.flush()
    report = run(
        seed=seed,
        ops=args.ops,
        clients=args.clients,
        fault_rate=args.fault_rate,
        engine=args.engine,
        accounts=args.accounts,
        log=lambda line: print(line, flush=True),
    )
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
