"""docs/openapi.json is generated from the code and must match it; the template's routes are all documented."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.checkout_local import LOCAL_API_KEY
from infra.fake_stripe import FakeStripe, serve
from infra.openapi import DOCUMENT_PATH, RouteMismatch, build_document, render, stale_message
from infra.template import LOCAL_REGION, Stack


@pytest.fixture(scope="module")
def document() -> dict:
    try:
        return build_document()
    except RouteMismatch as error:
        pytest.fail(str(error))


def test_committed_document_matches_the_code(document: dict) -> None:
    committed = DOCUMENT_PATH.read_text(encoding="utf-8") if DOCUMENT_PATH.is_file() else ""

    assert committed == render(document), stale_message()


def test_every_template_route_is_documented_with_its_auth(document: dict) -> None:
    for route in Stack().routes():
        operation = document["paths"][route.path][route.method.lower()]
        assert operation["security"] == ([{"bearerAuth": []}] if route.authorized else []), route.route_key
        assert operation["responses"], route.route_key


def test_document_is_openapi_3_1_with_a_bearer_scheme(document: dict) -> None:
    assert document["openapi"] == "3.1.0"
    assert document["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    refs = {value for value in _walk(document) if isinstance(value, str) and value.startswith("#/components/schemas/")}
    missing = {
        ref for ref in refs if ref.removeprefix("#/components/schemas/") not in document["components"]["schemas"]
    }
    assert missing == set(), "every $ref resolves"


def _walk(value: object) -> list[object]:
    if isinstance(value, dict):
        return [item for child in value.values() for item in _walk(child)]
    if isinstance(value, list):
        return [item for child in value for item in _walk(child)]
    return [value]


def test_every_operation_has_a_description_and_every_body_and_answer_an_example(document: dict) -> None:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation.get("description"), where
            for media in operation.get("requestBody", {}).get("content", {}).values():
                assert "example" in media, f"{where}: request body"
            for status, response in operation["responses"].items():
                for media in response.get("content", {}).values():
                    assert "example" in media, f"{where}: {status}"
            for parameter in operation.get("parameters", []):
                assert not parameter.get("required") or "example" in parameter, f"{where}: {parameter['name']}"


def test_the_headers_the_handlers_read_are_declared(document: dict) -> None:
    def headers(method: str, path: str) -> dict[str, bool]:
        operation = document["paths"][path][method]
        return {p["name"]: p["required"] for p in operation.get("parameters", []) if p["in"] == "header"}

    assert headers("post", "/v1/commitments") == {"Idempotency-Key": True, "If-Match": False}
    assert headers("post", "/v1/webhooks/stripe") == {"Stripe-Signature": True}
    assert headers("get", "/v1/balance") == {}
    webhook = document["paths"]["/v1/webhooks/stripe"]["post"]
    assert webhook["requestBody"]["content"]["application/json"]["schema"]["required"] == ["id", "type", "data"]
    for route in Stack().routes():
        # Every authenticated POST answering 201 or 202 moves tokens or creates something: it takes a key.
        operation = document["paths"][route.path][route.method.lower()]
        if route.method == "POST" and route.authorized and {"201", "202"} & set(operation["responses"]):
            assert "Idempotency-Key" in headers("post", route.path), route.route_key


@pytest.fixture
def local_stripe(aws: dict, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Checkout reaches Stripe: the local stack's fake one, as under `make run`."""
    boto3.client("secretsmanager", region_name=LOCAL_REGION).put_secret_value(
        SecretId=os.environ["STRIPE_API_KEY_SECRET_NAME"], SecretString=LOCAL_API_KEY
    )
    with serve(FakeStripe(api_key=LOCAL_API_KEY, checkout_url="http://localhost:3000")) as base:
        monkeypatch.setenv("STRIPE_API_BASE", base)
        yield


@pytest.mark.usefixtures("local_stripe")
def test_the_documented_examples_are_requests_the_api_accepts(document: dict, admin: Any, api: Any) -> None:
    """What "Try it out" sends with the examples as they are: never a 415, 422 or 500; a documented status."""
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            url = path
            query, headers = {}, {"content-type": "application/json"}
            for parameter in parameters:
                if not parameter.get("required"):
                    continue
                value = str(parameter["example"])
                if parameter["in"] == "path":
                    url = url.replace("{" + parameter["name"] + "}", value)
                elif parameter["in"] == "query":
                    query[parameter["name"]] = value
                else:
                    headers[parameter["name"]] = value
            media = operation.get("requestBody", {}).get("content", {}).get("application/json")
            body = json.dumps(media["example"]) if media else None
            answer = api.request(method.upper(), url, claims=admin.claims, headers=headers, body=body, query=query)

            where = f"{method.upper()} {path}: {answer.status} {answer.body[:300]}"
            if path.startswith("/v1/webhooks/"):
                assert (answer.status, answer.json["code"]) == (400, "invalid_signature"), where
            else:
                assert str(answer.status) in operation["responses"], where  # e.g. 502: no Stripe key here
                assert answer.status not in (415, 422, 500), where
