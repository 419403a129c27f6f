"""docs/openapi.json is generated from the code and must match it; the template's routes are all documented."""

from __future__ import annotations

import pytest

from infra.openapi import DOCUMENT_PATH, RouteMismatch, build_document, render, stale_message
from infra.template import Stack


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
