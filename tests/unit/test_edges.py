"""Small edge modules: cursors, idempotency keys, groups claims, the catalog, ids."""

from __future__ import annotations

import json

import pytest

from tokenledger.adapters.ids import new_ulid
from tokenledger.domain.catalog import CatalogInvalid, load_catalog, parse_catalog
from tokenledger.domain.errors import ValidationFailed
from tokenledger.http.api import parse_groups
from tokenledger.service.cursor import decode_cursor, encode_cursor
from tokenledger.service.idempotency import check_idempotency_key, request_hash


def test_a_cursor_round_trips_for_its_caller_and_filter() -> None:
    cursor = encode_cursor(caller="u1", seq=42, entry_type="grant")
    assert decode_cursor(cursor, caller="u1", entry_type="grant") == 42


@pytest.mark.parametrize(
    "cursor",
    ["", "not-base64!!", "eyJ1IjoidTEifQ", "tampered", "x" * 2000],
)
def test_forged_or_corrupt_cursors_are_422(cursor: str) -> None:
    if cursor == "tampered":  # made here: the key is this process's, so the value differs per worker
        cursor = encode_cursor(caller="u1", seq=3, entry_type=None)[:-2] + "AA"
    with pytest.raises(ValidationFailed):
        decode_cursor(cursor, caller="u1", entry_type=None)


def test_a_cursor_of_another_caller_is_422() -> None:
    with pytest.raises(ValidationFailed):
        decode_cursor(encode_cursor(caller="u2", seq=3, entry_type=None), caller="u1", entry_type=None)


def _unkeyed_cursor(payload: str) -> str:
    """A cursor as the old unkeyed scheme made them (sha256 check digits): anyone could."""
    import base64
    import hashlib

    raw = f"{hashlib.sha256(payload.encode()).hexdigest()[:12]}.{payload}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "payload",
    ['{"u":"u1","s":3,"t":""}', '{"u":"u1","s":' + "9" * 40 + ',"t":""}', '{"u":"u1","s":1e999,"t":""}'],
)
def test_a_cursor_forged_without_the_key_is_422(payload: str) -> None:
    """Issue #13 item 7: the check digits were a plain hash; a forged huge seq was a 500 on DynamoDB Local."""
    with pytest.raises(ValidationFailed):
        decode_cursor(_unkeyed_cursor(payload), caller="u1", entry_type=None)


def test_cursors_are_bound_to_the_key_and_every_decoded_number_is_bounded() -> None:
    from tokenledger.service.cursor import CURSOR_SEQ_MAX, CursorCodec, key_from_secret

    ours = CursorCodec(key_from_secret(lambda: "k" * 32))
    theirs = CursorCodec(key_from_secret(lambda: "x" * 32))
    cursor = ours.encode(caller="u1", seq=7, entry_type=None)
    assert ours.decode(cursor, caller="u1", entry_type=None) == 7
    with pytest.raises(ValidationFailed):
        theirs.decode(cursor, caller="u1", entry_type=None)
    for seq in (0, -1, CURSOR_SEQ_MAX + 1, 10**40):
        with pytest.raises(ValidationFailed):  # even correctly signed, a seq out of range is refused
            ours.decode(ours.encode(caller="u1", seq=seq, entry_type=None), caller="u1", entry_type=None)
    with pytest.raises(RuntimeError):
        CursorCodec(key_from_secret(lambda: "short")).encode(caller="u1", seq=1, entry_type=None)


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
        ('["ops,admin"]', {"ops,admin"}),
        ("[]", set()),
        (None, set()),
        ("[administrator]", {"administrator"}),
        # Not one of the two forms (issue #13 item 9: commas and quotes were split away).
        ("admin", set()),
        ("[ops,admin]", {"ops,admin"}),
        ("ops,admin", set()),
        ('[ops "admin"]', set()),
        ('"admin"', set()),
        ("[admin", set()),
        ('{"admin": 1}', set()),
        (["ops,admin", 7, None], {"ops,admin"}),
        ("[" + "x " * 5000 + "admin]", set()),
        (7, set()),
    ],
)
def test_groups_claim_forms(raw: object, groups: set[str]) -> None:
    assert parse_groups(raw) == groups


@pytest.mark.parametrize(
    ("claims", "admin"),
    [
        ({"sub": "svc", "scope": "tokenledger/admin"}, True),
        ({"sub": "svc", "scope": "openid tokenledger/admin email"}, True),
        ({"sub": "svc", "scope": "tokenledger/admin.read"}, False),
        ({"sub": "svc", "scope": "tokenledger/adminx tokenledger/read"}, False),
        ({"sub": "svc", "scope": "tokenledger/Admin"}, False),
        ({"sub": "svc", "scope": "tokenledger/admin,other"}, False),
        ({"sub": "svc", "scope": ["tokenledger/admin"]}, False),
        ({"sub": "svc"}, False),
        ({"sub": "u", "cognito:groups": "[ops,admin]"}, False),
        ({"sub": "u", "cognito:groups": "[ops admin]"}, True),
    ],
)
def test_admin_routes_take_the_admin_group_or_the_admin_scope_exactly(claims: dict[str, object], admin: bool) -> None:
    from tokenledger.domain.errors import Forbidden
    from tokenledger.http.api import caller_of

    event = {"requestContext": {"authorizer": {"jwt": {"claims": claims}}}}
    if admin:
        assert caller_of(event, "/v1/admin/balances").is_admin
    else:
        with pytest.raises(Forbidden):
            caller_of(event, "/v1/admin/balances")


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
    with pytest.raises(CatalogInvalid):
        parse_catalog(json.dumps({"packages": packages}))


def test_ulids_are_26_chars_and_sort_by_time() -> None:
    early, late = new_ulid(1_000), new_ulid(2_000)
    assert len(early) == len(late) == 26 and early < late


@pytest.mark.parametrize("status", [201, 202])
def test_a_write_and_its_replay_answer_the_status_of_their_route(status: int) -> None:
    """The HTTP layer picks a write's status (the use case returns a domain result): a replay answers the same."""
    from tokenledger.http.api import write_response
    from tokenledger.service.ledger import WriteResult

    first = write_response(WriteResult(body={"balance": 5}), status)
    again = write_response(WriteResult(body={"balance": 5}, replayed=True), status)
    assert (first.status_code, again.status_code) == (status, status)
    assert (first.body, again.body) == ({"balance": 5}, {"balance": 5})
    assert "Idempotent-Replayed" not in first.headers and again.headers["Idempotent-Replayed"] == "true"
