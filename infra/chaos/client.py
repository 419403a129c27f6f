"""One concurrent chaos client: sends its operations through the real handlers, faults on, and retries.

Each client has its own Lambda environments (`infra.api.LocalApi`), its own seeded choices
(`infra.chaos.operations.Chooser`) and its own seeded faults (`infra.chaos.faults`). It
retries like a real client, with the same Idempotency-Key or the same Stripe event, until it
gets a definite answer (2xx or 4xx) or gives up after `CLIENT_ATTEMPTS_MAX` tries.
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from typing import Any

from infra.api import ApiResponse, LocalApi
from infra.chaos import stripe
from infra.chaos.faults import FaultInjector, LambdaDied, faults
from infra.chaos.model import Op, Request, error_code
from infra.chaos.operations import Chooser
from infra.chaos.workload import Workload

CLIENT_ATTEMPTS_MAX = 60  # a client gives up (outcome unknown) after this many tries of one request
CLIENT_RETRY_DELAY_MS_MAX = 20


class Client:
    """One concurrent caller: its own Lambda environments, its own seeded choices and faults."""

    def __init__(self, number: int, workload: Workload, ops: int, fault_rate: float, accounts_table: str) -> None:
        self.number = number
        self.workload = workload
        self.ops_planned = ops
        self.choices = Chooser(number, workload)
        self.injector = FaultInjector(random.Random(f"{workload.seed}:faults:{number}"), fault_rate, accounts_table)
        self.api = LocalApi(workload.stack)
        self.done: list[Op] = []
        self.died = 0
        self.invoke_errors: Counter[str] = Counter()  # invokes that failed outside the handler
        self.triggers: dict[str, Any] = {}  # warm environments of non-HTTP functions (Cognito triggers)

    def run(self) -> None:
        for number in range(self.ops_planned):
            op = self.choices.next_op(number)
            self.execute(op)
            self.done.append(op)
            self.choices.remember(op)
            self.workload.share(op)

    def execute(self, op: Op) -> None:
        op.sent_at = time.monotonic()
        for attempt in range(1, CLIENT_ATTEMPTS_MAX + 1):
            op.attempts = attempt
            response = self.send(op.request)
            if response is None:
                op.transient["lambda_died"] += 1
            elif response.status >= 500:
                op.transient[f"http_{response.status}"] += 1
            elif response.status == 409 and error_code(response.json) == "contention":
                op.transient["contention"] += 1
            elif op.request.stripe and response.status >= 300:
                op.transient[f"stripe_{response.status}"] += 1  # Stripe retries every non-2xx answer
            else:
                op.status = response.status
                op.body = response.json
                op.replayed = response.headers.get("idempotent-replayed") == "true"
                op.answered_at = time.monotonic()
                self.choices.learn(op)
                return
            self._backoff(attempt)

    def send(self, request: Request) -> ApiResponse | None:
        if request.trigger is not None:
            return self._trigger(request.path, request.trigger)
        headers = {"content-type": "application/json", **request.headers}
        if request.stripe and request.raw_body is not None:
            headers["stripe-signature"] = stripe.signature(request.raw_body, self.workload.stripe_secret or "")
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
        time.sleep(self.choices.rng.random() * min(CLIENT_RETRY_DELAY_MS_MAX, attempt * 2) / 1000)


def _dumps(body: Any) -> str | None:
    return None if body is None else json.dumps(body)
