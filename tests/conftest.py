"""Shared fixtures: a moto world built from template.yaml and the real handlers behind it."""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.api import ApiResponse, LocalApi
from infra.template import LOCAL_REGION, Stack
from infra.world import create_buckets, create_secrets, create_tables, make_moto_atomic

STACK = Stack()

os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        "AWS_REGION": LOCAL_REGION,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "tokenledger",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
)
os.environ.update(STACK.environment())


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    """A fresh moto account with every table, bucket and secret of the template."""
    from moto import mock_aws

    make_moto_atomic()
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=LOCAL_REGION)
        create_tables(STACK, dynamodb)
        create_buckets(STACK, boto3.client("s3", region_name=LOCAL_REGION))
        create_secrets(STACK, boto3.client("secretsmanager", region_name=LOCAL_REGION), {})
        yield {"dynamodb": dynamodb}


class Client:
    """Calls the API as one user, the way the web app would."""

    _keys = itertools.count()

    def __init__(self, api: LocalApi, sub: str | None, groups: list[str] | None = None) -> None:
        self.api = api
        self.sub = sub
        self.groups = groups

    @property
    def claims(self) -> dict[str, Any] | None:
        if self.sub is None:
            return None
        claims: dict[str, Any] = {"sub": self.sub}
        if self.groups is not None:
            claims["cognito:groups"] = "[" + " ".join(self.groups) + "]"
        return claims

    def get(self, path: str, **query: Any) -> ApiResponse:
        return self.api.request("GET", path, claims=self.claims, query={k: str(v) for k, v in query.items()})

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | None = "auto",
        raw: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        all_headers = {"content-type": "application/json", **(headers or {})}
        if key == "auto":
            key = f"k-{next(self._keys)}-{uuid.uuid4().hex[:8]}"
        if key is not None:
            all_headers["idempotency-key"] = key
        payload = raw if raw is not None else json.dumps(body)
        return self.api.request("POST", path, claims=self.claims, headers=all_headers, body=payload)


@pytest.fixture
def api(aws: dict[str, Any]) -> LocalApi:
    return LocalApi(STACK)


@pytest.fixture
def user_id() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def user(api: LocalApi, user_id: str) -> Client:
    return Client(api, user_id)


@pytest.fixture
def admin(api: LocalApi) -> Client:
    return Client(api, f"admin-{uuid.uuid4().hex[:8]}", ["admin", "support"])


@pytest.fixture
def anonymous(api: LocalApi) -> Client:
    return Client(api, None)
