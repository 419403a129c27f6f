"""API fuzzing: schemathesis generates requests from the OpenAPI document and calls the real handlers.

Every response must be no 5xx, a documented status, the documented content type, and match
the documented schema. Requests carry a bearer token of a user (user routes) or an admin
(admin routes) and a fresh Idempotency-Key, so generation reaches the handlers' own
validation and the ledger, not only the 401s; the Stripe webhook gets no signature and must
answer 400, never 5xx.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from infra.api import LocalApi
from infra.checkout_local import LOCAL_API_KEY
from infra.fake_stripe import FakeStripe, serve
from infra.template import LOCAL_REGION
from infra.world import environment_variable
from tests.conftest import STACK, engine_world
from tests.fuzz.wsgi import LocalApiWsgi
from tests.invariants import assert_account_consistent

# CI depth; FUZZ_EXAMPLES=400 .venv/bin/pytest tests/fuzz digs deeper (docs/reliability.md).
EXAMPLES_PER_OPERATION = int(os.environ.get("FUZZ_EXAMPLES", "50"))
FUZZ_USER = "u-fuzz-1"
FUZZ_ADMIN = "admin-fuzz-1"


def documented_status(ctx: Any, response: Any, case: Any) -> bool | None:
    """`status_code_conformance`, except one answer every route may give: 404 `not_found` when a
    path parameter holds characters no route matches (the router's "no such resource")."""
    if response.status_code == 404 and "{" in case.operation.path:
        body = response.json() if response.content else {}
        if isinstance(body, dict) and body.get("code") == "not_found":
            return None
    return status_code_conformance(ctx, response, case)


CHECKS = [
    not_a_server_error,
    documented_status,
    content_type_conformance,
    response_schema_conformance,
]


def openapi_document() -> dict[str, Any]:
    """docs/openapi.json as committed (a stale-check test keeps it equal to the code's)."""
    from infra.openapi import DOCUMENT_PATH, build_document

    if DOCUMENT_PATH.exists():
        document: dict[str, Any] = json.loads(DOCUMENT_PATH.read_text(encoding="utf-8"))
        return document
    return build_document(STACK)


schema = schemathesis.openapi.from_dict(openapi_document())


@pytest.fixture(scope="module")
def wsgi_app(dynamodb_endpoint: str | None) -> Iterator[LocalApiWsgi]:
    """One world for the whole fuzz run (on the selected engine), with a funded user so commitments can succeed."""
    with (
        engine_world(dynamodb_endpoint) as dynamodb,
        local_stripe() as stripe,
    ):
        api = LocalApi(STACK)
        grant = api.request(
            "POST",
            f"/v1/admin/accounts/{FUZZ_USER}/entries",
            claims={"sub": FUZZ_ADMIN, "cognito:groups": "[admin]"},
            headers={"content-type": "application/json", "idempotency-key": "fuzz-seed"},
            body=json.dumps({"type": "grant", "amount": 1_000_000, "reason": "fuzz funds"}),
        )
        assert grant.status == 201, grant.body
        app = LocalApiWsgi(api)
        yield app
        print("fuzz: responses by route and status:", dict(sorted(app.statuses.items())))
        print(f"fuzz: Checkout Sessions created at the fake Stripe: {stripe.sessions_created()}")
        # Whatever the fuzzer sent, every account it touched is still consistent.
        users = {FUZZ_USER}
        for table in ("AccountsTable", "EntriesTable"):
            name = STACK.physical_name(table)
            for page in dynamodb.get_paginator("scan").paginate(TableName=name, ProjectionExpression="user_id"):
                users.update(item["user_id"]["S"] for item in page["Items"])
        for user in sorted(users):
            assert_account_consistent(dynamodb, STACK, user)


@contextlib.contextmanager
def local_stripe() -> Iterator[FakeStripe]:
    """Checkout reaches Stripe: the local stack's fake one (as under `make run`), so its answers are the route's own."""
    boto3.client("secretsmanager", region_name=LOCAL_REGION).put_secret_value(
        SecretId=os.environ["STRIPE_API_KEY_SECRET_NAME"], SecretString=LOCAL_API_KEY
    )
    fake = FakeStripe(api_key=LOCAL_API_KEY, checkout_url="http://localhost:3000")
    with serve(fake) as base, environment_variable("STRIPE_API_BASE", base):
        yield fake


def request_headers(path: str) -> dict[str, str]:
    sub = f"admin:{FUZZ_ADMIN}" if path.startswith("/v1/admin/") else f"user:{FUZZ_USER}"
    return {"Authorization": f"Bearer {sub}", "Idempotency-Key": f"fuzz-{uuid.uuid4().hex}"}


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_documented_operation_answers_as_documented_never_5xx(case: Any, wsgi_app: LocalApiWsgi) -> None:
    headers = {**(case.headers or {}), **request_headers(case.path)}
    case.call_and_validate(base_url="http://localhost", app=wsgi_app, headers=headers, checks=CHECKS)


def test_every_documented_write_meets_hostile_shapes_with_4xx_and_identity_first(wsgi_app: LocalApiWsgi) -> None:
    """The shapes generation does not reach (issue #13 item 6): bodies nested far deeper than
    Python's recursion limit, numbers of thousands of digits. Every POST, as its rightful caller
    (422), as a plain user on admin routes (403) and without a token (401): never a 5xx."""
    from tests.fuzz.test_fuzz_regressions import HOSTILE_BODIES

    api = wsgi_app.api
    posts = [path for path, item in openapi_document()["paths"].items() if "post" in item]
    assert posts
    for path in posts:
        concrete = path.replace("{user_id}", FUZZ_USER).replace("{entry_id}", "01JNOSUCHENTRY0000000000000")
        concrete = concrete.replace("{prediction_id}", "p-fuzz")
        admin_route = path.startswith("/v1/admin/")
        rightful = {"sub": FUZZ_ADMIN, "cognito:groups": "[admin]"} if admin_route else {"sub": FUZZ_USER}
        for name, body in HOSTILE_BODIES.items():
            headers = {"content-type": "application/json", "idempotency-key": f"fuzz-{uuid.uuid4().hex}"}
            for claims in (rightful, {"sub": FUZZ_USER}, None):
                response = api.request("POST", concrete, claims=claims, headers=headers, body=body)
                assert response.status < 500, (path, name, claims, response.body[:200])
                if path.startswith("/v1/webhooks/"):
                    continue
                if claims is None:
                    assert response.status == 401, (path, name)
                elif admin_route and "cognito:groups" not in claims:
                    assert response.status == 403, (path, name)
