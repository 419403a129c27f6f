"""The benchmark's world: the template's tables on moto (or DynamoDB Local), counted clients,
and the real handlers called through one `Environment` each, as Lambda would run them.

The world is `infra.world.local_world`'s and the routing `infra.api.LocalApi`'s: the same as the
tests' and the local stack's.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

from bench.counting import CallRecorder
from infra.api import ApiResponse, LocalApi, caller_claims
from infra.lambdas import Environment
from infra.template import LOCAL_REGION, Stack
from infra.world import LOCAL_FUNCTION_DEFAULTS, local_world, use_local_environment

STACK = Stack()

# The functions' environment besides the template's variables (which set their own log level).
BASE_ENV = {**LOCAL_FUNCTION_DEFAULTS, "POWERTOOLS_LOG_LEVEL": "WARNING"}


def prepare_environment() -> None:
    use_local_environment(STACK)


class World:
    """A fresh account with the template's resources; `recorder` counts the handlers' calls."""

    def __init__(self, *, engine: str = "moto", report_capacity: bool = False) -> None:
        self.engine = engine
        self.report_capacity = report_capacity
        self.api = LocalApi(STACK)
        self.functions = STACK.functions()
        self.recorder: CallRecorder
        self.oracle: Any = None
        self.endpoint_url: str | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[World]:
        import boto3

        prepare_environment()
        with local_world(STACK, self.engine, secrets=secret_values()) as world:
            self.endpoint_url = world.dynamodb_endpoint
            # A fresh default session: every client the handlers create from it carries our hooks.
            boto3.setup_default_session(region_name=LOCAL_REGION)
            self.oracle = boto3.session.Session(region_name=LOCAL_REGION).client("dynamodb")
            self.recorder = CallRecorder(self.oracle, report_capacity=self.report_capacity)
            self.recorder.install(boto3.DEFAULT_SESSION)
            yield self

    # ------------------------------------------------------------------ handlers
    def has_route(self, method: str, path: str) -> bool:
        return self.api.match(method, path) is not None

    def environment(self, function: str) -> Environment:
        """A new cold environment of `function` (a fresh import of its module)."""
        return Environment(self.functions[function])

    def environment_for(self, method: str, path: str) -> Environment:
        found = self.api.match(method, path)
        if found is None:
            raise LookupError(f"no route {method} {path} in template.yaml")
        return self.environment(found[0].function)

    def call(
        self,
        env: Environment,
        method: str,
        path: str,
        *,
        sub: str | None = None,
        groups: list[str] | None = None,
        body: Any = None,
        raw_body: str | None = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
    ) -> ApiResponse:
        """The request routed as API Gateway would, served by `env` (warm or cold, as the caller chose)."""
        all_headers = {"content-type": "application/json", **(headers or {})}
        payload = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        claims = caller_claims(sub, groups or None)
        return self.api.request(
            method, path, claims=claims, headers=all_headers, body=payload, query=query, environment=env
        )


def secret_values() -> dict[str, str]:
    """A webhook signing secret for every declared secret (the Stripe function verifies with it)."""
    return {logical_id: WEBHOOK_SECRET for logical_id in STACK.of_type("AWS::SecretsManager::Secret")}


WEBHOOK_SECRET = "whsec_bench_" + "0" * 24


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def idem_key() -> str:
    return "bench-" + uuid.uuid4().hex
