"""Small edge modules: cursors, idempotency keys, groups claims, the catalog, ids."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from tokenledger.adapters.ids import new_ulid
from tokenledger.domain.catalog import load_catalog, parse_catalog
from tokenledger.domain.errors import ValidationFailed
from tokenledger.http.api import parse_groups
from tokenledger.service.cursor import decode_cursor, encode_cursor
from tokenledger.service.idempotency import check_idempotency_key, request_hash


def test_a_cursor_round_trips_for_its_caller_and_filter() -> None:
    cursor = encode_cursor(caller="u1", seq=42, entry_type="grant")
    assert decode_cursor(cursor, caller="u1", entry_type="grant") == 42


@pytest.mark.parametrize(
    "cursor",
    ["", "not-base64!!", "eyJ1IjoidTEifQ", encode_cursor(caller="u1", seq=3, entry_type=None)[:-2] + "AA", "x" * 2000],
)
def test_forged_or_corrupt_cursors_are_422(cursor: str) -> None:
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor, caller="u1", entry_type=None)


def test_a_cursor_of_another_caller_is_422() -> None:
    with pytest.raises(ValidationFailed):
        decode_cursor(encode_cursor(caller="u2", seq=3, entry_type=None), caller="u1", entry_type=None)


@pytest.mark.parametrize("key", [None, "", "a" * 256, "tab\there", "caf\u00e9", "new\nline"])
def test_bad_idempotency_keys_are_refused(key: str | None) -> None:
    with pytest.raises(ValidationFailed):
        check_idempotency_key(key)


def test_good_idempotency_keys_pass() -> None:
    assert check_idempotency_key("a" * 255) == "a" * 255
    assert check_idempotency_key("order 17: retry #2 ~!") == "order 17: retry #2 ~!"


def test_request_hash_ignores_key_order_but_not_values() -> None:
    assert request_hash({"a": 1, "b": 2}) == request_hash({"b": 2, "a": 1})
    assert request_hash({"a": 1}) != request_hash({"a": 2})


@pytest.mark.parametrize(
    ("raw", "groups"),
    [
        ("[admin support]", {"admin", "support"}),
        ('["admin","support"]', {"admin", "support"}),
        (["admin"], {"admin"}),
        ("admin", {"admin"}),
        ("[]", set()),
        (None, set()),
        ("[administrator]", {"administrator"}),
    ],
)
def test_groups_claim_forms(raw: object, groups: set[str]) -> None:
    assert parse_groups(raw) == groups


def test_the_shipped_catalog_is_valid_and_unique() -> None:
    catalog = load_catalog()
    ids = [p.package_id for p in catalog.packages]
    assert len(ids) == len(set(ids)) >= 1
    assert all(p.tokens > 0 and p.price.amount > 0 for p in catalog.packages)


@pytest.mark.parametrize(
    "packages",
    [
        [],
        [{"package_id": "a", "name": "A", "tokens": 1.5, "price": {"amount": 1, "currency": "usd"}}],
        [{"package_id": "a", "name": "A", "tokens": 0, "price": {"amount": 1, "currency": "usd"}}],
        [{"package_id": "a", "name": "A", "tokens": 1, "price": {"amount": 1, "currency": "USD"}}],
        [{"package_id": "a", "name": "A", "tokens": 1, "price": {"amount": 1, "currency": "usd"}}] * 2,
    ],
)
def test_a_broken_catalog_fails_at_load(packages: list[object]) -> None:
    with pytest.raises(ValidationError):
        parse_catalog(json.dumps({"packages": packages}))


def test_ulids_are_26_chars_and_sort_by_time() -> None:
    early, late = new_ulid(1_000), new_ulid(2_000)
    assert len(early) == len(late) == 26 and early < late
