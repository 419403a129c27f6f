"""The benchmark's world: the template's tables on moto (or DynamoDB Local), counted clients,
and the real handlers called through one `Environment` each, as Lambda would run them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from bench.counting import CallRecorder
from infra.events import http_event
from infra.lambdas import Environment
from infra.template import LOCAL_REGION, Route, Stack
from infra.world import LOCAL_AWS_ENVIRONMENT, environment_variable

STACK = Stack()

# What the tests set (tests/conftest.py), plus every variable the template gives the functions.
BASE_ENV = {
    **LOCAL_AWS_ENVIRONMENT,
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


def prepare_environment() -> None:
    os.environ.update(BASE_ENV)
    os.environ.update(STACK.environment())


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    json: Any


class World:
    """A fresh account with the template's resources; `recorder` counts the handlers' calls."""

    def __init__(self, *, engine: str = "moto", report_capacity: bool = False) -> None:
        self.engine = engine
        self.report_capacity = report_capacity
        self.routes: list[Route] = STACK.routes()
        self.functions = STACK.functions()
        self.recorder: CallRecorder
        self.oracle: Any = None
        self.endpoint_url: str | None = None

    @contextlib.contextmanager
    def running(self) -> Iterator[World]:
        import boto3
        from moto import mock_aws

        from infra.world import create_buckets, create_event_buses, create_secrets, create_tables, make_moto_atomic

        prepare_environment()
        make_moto_atomic()
        with contextlib.ExitStack() as stack:
            if self.engine == "dynamodb-local":
                from infra.dynamodb_local import DynamoDBLocal

                server = stack.enter_context(DynamoDBLocal())
                self.endpoint_url = server.endpoint_url
                stack.enter_context(environment_variable("AWS_ENDPOINT_URL_DYNAMODB", server.endpoint_url))
            stack.enter_context(mock_aws())
            # A fresh default session: every client the handlers create from it carries our hooks.
            boto3.setup_default_session(region_name=LOCAL_REGION)
            self.oracle = boto3.session.Session(region_name=LOCAL_REGION).client("dynamodb")
            self.recorder = CallRecorder(self.oracle, report_capacity=self.report_capacity)
            self.recorder.install(boto3.DEFAULT_SESSION)
            create_tables(STACK, self.oracle)
            create_buckets(STACK, boto3.client("s3", region_name=LOCAL_REGION))
            create_secrets(STACK, boto3.client("secretsmanager", region_name=LOCAL_REGION), secret_values())
            create_event_buses(STACK, boto3.client("events", region_name=LOCAL_REGION))
            yield self

    # ------------------------------------------------------------------ handlers
    def has_route(self, method: str, path: str) -> bool:
        return self.route(method, path) is not None

    def route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                return route, params
        return None

    def environment(self, function: str) -> Environment:
        """A new cold environment of `function` (a fresh import of its module)."""
        return Environment(self.functions[function])

    def environment_for(self, method: str, path: str) -> Environment:
        found = self.route(method, path)
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
    ) -> Reply:
        found = self.route(method, path)
        if found is None:
            raise LookupError(f"no route {method} {path} in template.yaml")
        route, params = found
        claims: dict[str, Any] | None = None
        if sub is not None:
            claims = {"sub": sub}
            if groups:
                claims["cognito:groups"] = "[" + " ".join(groups) + "]"
        all_headers = {"content-type": "application/json", **(headers or {})}
        payload = raw_body if raw_body is not None else (json.dumps(body) if body is not None else None)
        event = http_event(
            route,
            path=path,
            path_parameters=params,
            query=query,
            headers=all_headers,
            body=payload,
            claims=claims if route.authorized else None,
        )
        raw = env.invoke(event)
        return parse_reply(raw)


def parse_reply(raw: dict[str, Any]) -> Reply:
    headers = {k.lower(): str(v) for k, v in (raw.get("headers") or {}).items()}
    body = raw.get("body") or ""
    if raw.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    parsed = json.loads(body) if body and headers.get("content-type", "").endswith("json") else body
    return Reply(int(raw.get("statusCode", 200)), headers, parsed)


def secret_values() -> dict[str, str]:
    """A webhook signing secret for every declared secret (the Stripe function verifies with it)."""
    return {logical_id: WEBHOOK_SECRET for logical_id in STACK.of_type("AWS::SecretsManager::Secret")}


WEBHOOK_SECRET = "whsec_bench_" + "0" * 24


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def idem_key() -> str:
    return "bench-" + uuid.uuid4().hex
