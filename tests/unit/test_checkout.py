"""Checkout rules without AWS or Stripe: redirect origins, settings, the use case against fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tokenledger.domain.catalog import load_catalog
from tokenledger.domain.errors import (
    IdempotencyKeyReused,
    PaymentProviderUnavailable,
    RedirectNotAllowed,
    ValidationFailed,
)
from tokenledger.domain.redirects import InvalidOrigin, check_redirect, origin_of, parse_allowed_origins
from tokenledger.service.checkout import (
    CheckoutSessions,
    CheckoutSettings,
    stripe_idempotency_key,
)
from tokenledger.service.idempotency import IdempotencyScope
from tokenledger.service.ports import CreatedSession, SessionRequest, StoredResponse

ALLOWED = parse_allowed_origins("https://app.example.com, http://localhost:3000")


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://app.example.com/tokens?x=1#y", "https://app.example.com"),
        ("HTTPS://APP.example.com:443/", "https://app.example.com"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://[::1]:3000/x", "http://[::1]:3000"),
        ("https://app.example.com#@evil.example", "https://app.example.com"),  # a fragment, browsers agree
        ("https://app.example.com@evil.example/", None),
        ("https://app.example.com\\@evil.example/", None),
        ("https://app.example.com%2F@evil.example/", None),
        ("//app.example.com/", None),
        ("https:app.example.com", None),
        ("https:///evil.example", None),
        ("https://app.example.com./", None),
        ("https://app.example.com:0/", None),
        ("https://app.example.com:99999/", None),
        ("https://app.example.com:+443/", None),
        ("ftp://app.example.com/", None),
        ("https://app.ex\u0430mple.com/", None),  # Cyrillic a
        ("https://app.example.com/\n", None),
        ("https://app.example.com/" + "a" * 2100, None),
    ],
)
def test_origin_is_exact_scheme_host_port_and_anything_ambiguous_is_none(url: str, origin: str | None) -> None:
    assert origin_of(url) == origin


def test_check_redirect_allows_only_listed_origins() -> None:
    assert check_redirect("https://app.example.com/ok", ALLOWED, field="success_url") == "https://app.example.com/ok"
    for url in ("https://app.example.com.evil.example/", "http://app.example.com/", "http://localhost:3001/"):
        with pytest.raises(RedirectNotAllowed):
            check_redirect(url, ALLOWED, field="success_url")


@pytest.mark.parametrize("setting", ["*", "https://app.example.com/path", "app.example.com", "https://*.example.com"])
def test_an_allowed_origin_setting_must_be_exactly_an_origin(setting: str) -> None:
    with pytest.raises(InvalidOrigin):
        parse_allowed_origins(setting)


def test_settings_refuse_defaults_off_the_allow_list() -> None:
    with pytest.raises(ValueError, match="success URL"):
        CheckoutSettings.parse(
            allowed_origins="https://app.example.com",
            success_url="https://elsewhere.example/ok",
            cancel_url="https://app.example.com/no",
        )


# ---------------------------------------------------------------- the use case with fakes
@dataclass
class FakeProvider:
    amount: int | None = None
    calls: list[tuple[SessionRequest, str]] = field(default_factory=list)

    def create_checkout_session(self, request: SessionRequest, *, idempotency_key: str) -> CreatedSession:
        self.calls.append((request, idempotency_key))
        amount = request.package.price.amount if self.amount is None else self.amount
        return CreatedSession(f"cs_test_{len(self.calls)}", "https://pay.example/x", 2_000_000_000, amount, "usd")


@dataclass
class FakeRecords:
    items: dict[str, StoredResponse] = field(default_factory=dict)
    sneak_in: StoredResponse | None = None  # a racing request's record, put between our get and our put

    def get(self, pk: str) -> StoredResponse | None:
        return self.items.get(pk)

    def put_if_absent(self, pk: str, response: StoredResponse, *, expires_at: int) -> StoredResponse | None:
        if self.sneak_in is not None:
            self.items[pk] = self.sneak_in
        if pk in self.items:
            return self.items[pk]
        self.items[pk] = response
        return None


def service(provider: FakeProvider, records: FakeRecords, mismatches: list[dict[str, Any]]) -> CheckoutSessions:
    settings = CheckoutSettings.parse(
        allowed_origins="https://app.example.com",
        success_url="https://app.example.com/ok",
        cancel_url="https://app.example.com/no",
    )
    return CheckoutSessions(
        provider=provider,
        records=records,
        settings=settings,
        catalog=load_catalog,
        clock=lambda: 1_000.0,
        on_price_mismatch=mismatches.append,
    )


def scope(key: str = "k", request_hash: str = "h", caller: str = "u-1") -> IdempotencyScope:
    return IdempotencyScope(caller=caller, route="POST /v1/checkout-sessions", key=key, request_hash=request_hash)


def create(checkout: CheckoutSessions, *, user_id: str = "u-1", key_scope: IdempotencyScope | None = None) -> Any:
    return checkout.create(
        user_id=user_id, package_id="pro", success_url=None, cancel_url=None, scope=key_scope or scope()
    )


def test_a_racing_request_that_stored_first_is_answered_instead() -> None:
    theirs = StoredResponse(request_hash="h", body={"checkout_session_id": "cs_test_theirs"})
    records = FakeRecords(sneak_in=theirs)

    result = create(service(FakeProvider(), records, []))

    assert result.replayed and result.body == theirs.body


def test_a_racing_request_with_another_body_is_idempotency_key_reused() -> None:
    records = FakeRecords(sneak_in=StoredResponse(request_hash="other", body={}))

    with pytest.raises(IdempotencyKeyReused):
        create(service(FakeProvider(), records, []))


def test_a_session_priced_off_the_catalog_is_never_handed_out_or_stored() -> None:
    records, mismatches = FakeRecords(), []

    with pytest.raises(PaymentProviderUnavailable):
        create(service(FakeProvider(amount=1), records, mismatches))

    assert records.items == {}
    assert mismatches and mismatches[0]["expected_amount"] == 3999 and mismatches[0]["stripe_amount_subtotal"] == 1


def test_a_caller_whose_id_the_webhook_could_not_credit_cannot_pay() -> None:
    provider = FakeProvider()

    with pytest.raises(ValidationFailed):
        create(service(provider, FakeRecords(), []), user_id="u 1/../x")

    assert provider.calls == []


def test_the_stripe_key_is_derived_from_caller_and_key_not_from_the_body() -> None:
    assert stripe_idempotency_key(scope(request_hash="a")) == stripe_idempotency_key(scope(request_hash="b"))
    assert stripe_idempotency_key(scope(caller="u-1")) != stripe_idempotency_key(scope(caller="u-2"))
    assert stripe_idempotency_key(scope(key="k1")) != stripe_idempotency_key(scope(key="k2"))
    assert len(stripe_idempotency_key(scope(key="x" * 255))) <= 255
