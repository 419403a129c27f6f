"""POST /v1/checkout-sessions end to end: the real handler, tables and secrets from template.yaml,
and a fake Stripe on a local port that answers (and keeps idempotency keys) the way Stripe does."""

from __future__ import annotations

import dataclasses
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from infra.api import ApiResponse, LocalApi
from infra.checkout_local import LocalCheckout
from infra.dynamodb_local import find_free_port
from infra.fake_stripe import FakePrice, FakeStripe, serve
from infra.template import LOCAL_REGION
from tests.conftest import STACK, Client
from tests.invariants import assert_account_consistent

ROUTE = "/v1/checkout-sessions"
API_KEY = "sk_test_fixture_0123456789"
CATALOG = {"starter": (100, 499), "standard": (550, 1999), "pro": (1200, 3999), "whale": (6500, 19999)}
RESPONSE_FIELDS = {"checkout_session_id", "url", "package_id", "tokens", "price", "expires_at"}
DEFAULT_SUCCESS = STACK.parameters["CheckoutSuccessUrl"]
DEFAULT_CANCEL = STACK.parameters["CheckoutCancelUrl"]
IDEMPOTENCY_TABLE = STACK.physical_name("IdempotencyTable")


def put_secret(env_name: str, value: str) -> None:
    boto3.client("secretsmanager", region_name=LOCAL_REGION).put_secret_value(
        SecretId=os.environ[env_name], SecretString=value
    )


@pytest.fixture
def stripe(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeStripe]:
    """Stripe as the checkout function reaches it: STRIPE_API_BASE, and the key in the template's secret."""
    fake = FakeStripe(api_key=API_KEY, checkout_url="https://checkout.stripe.test")
    put_secret("STRIPE_API_KEY_SECRET_NAME", API_KEY)
    with serve(fake) as base:
        monkeypatch.setenv("STRIPE_API_BASE", base)
        yield fake


@pytest.fixture
def buyer(stripe: FakeStripe, user: Client) -> Client:
    return user


def buy(client: Client, body: Any = None, *, key: str | None = "auto", **kwargs: Any) -> ApiResponse:
    return client.post(ROUTE, {"package_id": "standard"} if body is None else body, key=key, **kwargs)


def assert_problem(response: ApiResponse, status: int, code: str) -> None:
    assert response.status == status, response.body
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json["code"] == code and response.json["status"] == status


def stored_record(aws: dict[str, Any], user_id: str, key: str) -> dict[str, Any] | None:
    pk = f"idem|POST /v1/checkout-sessions|{user_id}|{key}"
    item: dict[str, Any] | None = (
        aws["dynamodb"].get_item(TableName=IDEMPOTENCY_TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
    )
    return item


# ---------------------------------------------------------------- what a buyer sees
def test_a_session_sells_the_catalog_package_to_the_caller(
    aws: dict[str, Any], stripe: FakeStripe, buyer: Client
) -> None:
    package_id = "whale"
    response = buy(buyer, {"package_id": package_id}, key="buy-1")

    assert response.status == 201, response.body
    body = response.json
    tokens, amount = CATALOG[package_id]
    assert set(body) == RESPONSE_FIELDS
    assert body["package_id"] == package_id and body["tokens"] == tokens
    assert body["price"] == {"amount": amount, "currency": "usd"}
    assert body["url"] == f"https://checkout.stripe.test/checkout/{body['checkout_session_id']}"
    expires = datetime.fromisoformat(body["expires_at"].replace("Z", "+00:00"))
    assert body["expires_at"].endswith("Z") and expires > datetime.now(UTC) + timedelta(hours=1)
    session = stripe.sessions[body["checkout_session_id"]]
    metadata = {"user_id": buyer.sub, "package_id": package_id}
    assert session["mode"] == "payment" and session["client_reference_id"] == buyer.sub
    assert session["metadata"] == metadata and session["_payment_intent_metadata"] == metadata
    assert (session["amount_subtotal"], session["currency"]) == (amount, "usd")
    assert session["success_url"] == DEFAULT_SUCCESS and session["cancel_url"] == DEFAULT_CANCEL
    # the key Stripe saw is derived from the caller's, never the caller's itself
    (sent_key,) = stripe.idempotency_keys
    assert sent_key.startswith("tokenledger-checkout-") and "buy-1" not in sent_key
    assert stored_record(aws, str(buyer.sub), "buy-1") is not None
    assert assert_account_consistent(aws["dynamodb"], STACK, str(buyer.sub))["balance"] == 0  # nothing moved yet


def test_the_same_key_answers_the_same_session_and_stripe_is_called_once(
    api: LocalApi, stripe: FakeStripe, buyer: Client
) -> None:
    first = buy(buyer, key="same")
    again = buy(buyer, key="same")
    other_body = buy(buyer, {"package_id": "pro"}, key="same")
    someone_else = buy(Client(api, f"u-{uuid.uuid4().hex[:8]}"), key="same")

    assert first.status == again.status == 201
    assert again.json == first.json and again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert_problem(other_body, 422, "idempotency_key_reused")
    assert someone_else.status == 201 and someone_else.json["checkout_session_id"] != first.json["checkout_session_id"]
    assert stripe.create_calls == 2 and stripe.sessions_created() == 2  # one per caller


def test_the_same_key_racing_twice_makes_one_session(api: LocalApi, stripe: FakeStripe, buyer: Client) -> None:
    barrier = threading.Barrier(3)
    answers: list[ApiResponse] = []

    def race() -> None:
        barrier.wait()
        answers.append(buy(buyer, key="racing"))

    threads = [threading.Thread(target=race) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert [a.status for a in answers] == [201, 201, 201], [a.body for a in answers]
    assert len({a.json["checkout_session_id"] for a in answers}) == 1
    assert stripe.sessions_created() == 1


# ---------------------------------------------------------------- what a forger meets
REDIRECT_TRICKS = [
    "https://evil.example/steal",
    "http://localhost:3000@evil.example/",  # user info: the host is evil.example
    "http://localhost:3000\\@evil.example/",  # backslash: browsers read it as a slash
    "//evil.example/x",  # scheme-relative
    "/relative/path",
    "http:evil.example",
    "https://localhost:3000/",  # another scheme is another origin
    "http://localhost:3001/",  # another port
    "http://localhost/",  # the default port is not 3000
    "http://localhost.evil.example:3000/",
    "http://127.0.0.1:3000.evil.example/",
    "javascript:alert(document.cookie)",
    "data:text/html,<script>alert(1)</script>",
    "http://localhost:3000 /x",
    "http://local\u0127ost:3000/",  # non-ASCII look-alike
    "http://%6cocalhost:3000/",
    "http://localhost:3000\t@evil.example/",
    "",
    "http://localhost:3000/" + "a" * 3000,
]
FORGED_PACKAGES = ["nope", "STANDARD", "standard ", "../standard", "standard\u0000", "", "pi_123", "x" * 200]
HOSTILE_BODIES = [
    ('{"package_id": 5}', {}),
    ('{"package_id": ["standard"]}', {}),
    ('{"package_id": {"$ne": null}}', {}),
    ('{"package_id": true}', {}),
    ('{"package_id": "standard", "tokens": 1000000}', {}),  # only the catalog decides tokens and price
    ('{"package_id": "standard", "price": {"amount": 1}}', {}),
    ('{"package_id": "standard", "success_url": 7}', {}),
    ('{"package_id": "' + "x" * 100_000 + '"}', {}),
    ("{}", {}),
    ("[]", {}),
    ("null", {}),
    ("not json", {}),
    ("[" * 5000 + "]" * 5000, {}),
    ('{"package_id": 1' + "0" * 5000 + "}", {}),  # past Python's 4,300-digit int limit: was a 500
    ('{"package_id": NaN}', {}),
    ("\u202e" + '{"package_id": "starter"}', {}),
    ('{"package_id": "standard", "package_id": "whale"', {}),
    ('{"package_id": "standard"}', {"content-type": "text/plain"}),
]


def test_forgers_meet_4xx_problems_and_stripe_is_never_called(
    aws: dict[str, Any], api: LocalApi, stripe: FakeStripe, buyer: Client
) -> None:
    refused: list[tuple[str, ApiResponse]] = []
    for url in REDIRECT_TRICKS:
        refused.append(("redirect", buy(buyer, {"package_id": "starter", "success_url": url}, key="forged")))
        refused.append(("redirect", buy(buyer, {"package_id": "starter", "cancel_url": url}, key="forged")))
    for package_id in FORGED_PACKAGES:
        refused.append(("package", buy(buyer, {"package_id": package_id}, key="forged")))
    for raw, headers in HOSTILE_BODIES:
        refused.append(("body", buyer.post(ROUTE, raw=raw, headers=headers, key="forged")))
    anonymous = Client(api, None).post(ROUTE, raw="not json")
    no_key = buy(buyer, key=None)
    bad_key = buy(buyer, key="\u00e9" * 3)

    codes = {"redirect": "redirect_not_allowed", "package": "unknown_package"}
    for kind, response in refused:
        assert 400 <= response.status < 500, (kind, response.status, response.body[:300])
        assert response.headers["content-type"] == "application/problem+json"
        if kind in codes:
            assert_problem(response, 422, codes[kind])
    assert_problem(anonymous, 401, "unauthorized")
    assert_problem(no_key, 422, "validation_error")
    assert_problem(bad_key, 422, "validation_error")
    assert stripe.create_calls == 0 and stored_record(aws, str(buyer.sub), "forged") is None

    # nothing was stored under the key: the same key still buys, on an allowed origin, as given
    success = "http://127.0.0.1:3000/app/tokens?bought={CHECKOUT_SESSION_ID}"
    cancel = "http://LOCALHOST:3000/app/tokens#cancelled"
    bought = buy(buyer, {"package_id": "pro", "success_url": success, "cancel_url": cancel}, key="forged")
    assert bought.status == 201, bought.body
    session = stripe.sessions[bought.json["checkout_session_id"]]
    assert (session["success_url"], session["cancel_url"]) == (success, cancel)


# ---------------------------------------------------------------- when Stripe fails
def test_stripe_failing_is_502_and_the_same_key_then_gets_a_session(
    aws: dict[str, Any], stripe: FakeStripe, buyer: Client
) -> None:
    stripe.fail_next(500)
    failed = buy(buyer, key="flaky")
    retried = buy(buyer, key="flaky")  # Stripe replays its stored 500 for that key; the next key in line answers
    replayed = buy(buyer, key="flaky")

    assert_problem(failed, 502, "payment_provider_unavailable")
    assert retried.status == 201 and replayed.json == retried.json
    assert stripe.sessions_created() == 1


def test_a_key_stripe_refuses_or_none_at_all_is_502_and_stores_nothing(
    aws: dict[str, Any], stripe: FakeStripe, user: Client
) -> None:
    for secret_value in ("sk_test_revoked_key", " ", "pk_test_publishable"):
        put_secret("STRIPE_API_KEY_SECRET_NAME", secret_value)
        response = buy(Client(LocalApi(STACK), user.sub), key="no-key")  # a cold start reads the secret anew

        assert_problem(response, 502, "payment_provider_unavailable")
        assert stripe.sessions_created() == 0 and stored_record(aws, str(user.sub), "no-key") is None


def test_stripe_unreachable_is_502_and_a_retry_with_the_same_key_succeeds_later(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, user: Client
) -> None:
    put_secret("STRIPE_API_KEY_SECRET_NAME", API_KEY)
    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{find_free_port()}")  # nobody listens there
    down = buy(user, key="later")

    assert_problem(down, 502, "payment_provider_unavailable")
    assert stored_record(aws, str(user.sub), "later") is None
    fake = FakeStripe(api_key=API_KEY, checkout_url="https://checkout.stripe.test")
    with serve(fake) as base:
        monkeypatch.setenv("STRIPE_API_BASE", base)
        back = buy(Client(LocalApi(STACK), user.sub), key="later")  # a new environment reads the new base
    assert back.status == 201, back.body
    assert fake.sessions_created() == 1


# ---------------------------------------------------------------- catalog entries with a Stripe Price
def test_a_catalog_price_id_is_sold_as_that_price_and_must_match_the_catalog(
    aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch, stripe: FakeStripe, buyer: Client
) -> None:
    from tokenledger.domain import catalog

    shipped = catalog.load_catalog()
    with_prices = dataclasses.replace(
        shipped,
        packages=tuple(dataclasses.replace(p, stripe_price_id=f"price_test_{p.package_id}") for p in shipped.packages),
    )
    monkeypatch.setattr(catalog, "load_catalog", lambda: with_prices)
    stripe.prices["price_test_pro"] = FakePrice(3999, "usd", "Pro pack")
    stripe.prices["price_test_whale"] = FakePrice(9999, "usd", "Whale pack, drifted")  # not the catalog's 19999

    sold = buy(buyer, {"package_id": "pro"})
    drifted = buy(buyer, {"package_id": "whale"}, key="drift")
    listed = buyer.get("/v1/packages")

    assert sold.status == 201, sold.body
    assert sold.json["price"] == {"amount": 3999, "currency": "usd"}
    assert stripe.sessions[sold.json["checkout_session_id"]]["_product_name"] == "Pro pack"
    assert_problem(
        drifted, 502, "payment_provider_unavailable"
    )  # Stripe would charge 99.99; the webhook would not credit
    assert stored_record(aws, str(buyer.sub), "drift") is None
    assert listed.status == 200 and all("stripe_price_id" not in p for p in listed.json["packages"])


# ---------------------------------------------------------------- the whole loop, on the local checkout
def test_paying_on_the_local_checkout_credits_the_package_once_and_cancel_credits_nothing(
    aws: dict[str, Any], api: LocalApi, monkeypatch: pytest.MonkeyPatch, user: Client
) -> None:
    signing = f"whsec_{uuid.uuid4().hex}"
    put_secret("STRIPE_WEBHOOK_SECRET_NAME", signing)
    put_secret("STRIPE_API_KEY_SECRET_NAME", API_KEY)
    lines: list[str] = []
    checkout = LocalCheckout(
        api=api, signing_secret=signing, api_key=API_KEY, base_url="http://127.0.0.1:3000", log=lines.append
    )
    with serve(checkout.stripe) as base:
        monkeypatch.setenv("STRIPE_API_BASE", base)
        created = buy(user, {"package_id": "standard"}, key="loop")
        session_id = created.json["checkout_session_id"]
        path = urlsplit(created.json["url"]).path
        page = checkout.handle("GET", path, "", {}, b"")
        paid = checkout.handle("POST", path + "/pay", "", {}, b"")
        paid_again = checkout.handle("POST", path + "/pay", "", {}, b"")
        done = checkout.handle("GET", "/checkout/complete", f"session_id={session_id}", {}, b"")
        other = buy(user, {"package_id": "starter", "cancel_url": "http://127.0.0.1:3000/shop?c={CHECKOUT_SESSION_ID}"})
        cancelled = checkout.handle("POST", urlsplit(other.json["url"]).path + "/cancel", "", {}, b"")

    assert created.status == 201 and page.status == 200
    assert b"Standard pack" in page.body and b"19.99 USD" in page.body
    assert paid.status == 303
    assert paid.headers["location"] == DEFAULT_SUCCESS.replace("{CHECKOUT_SESSION_ID}", session_id)
    assert paid_again.status == 409  # a session is paid once
    assert b"<span id=balance>550</span>" in done.body
    payment = checkout.stripe.sessions[session_id]["payment_intent"]
    assert any(payment in line for line in lines), "the payment id is printed for refunds"
    state = assert_account_consistent(aws["dynamodb"], STACK, str(user.sub))
    assert state == {"balance": 550, "version": 1, "entries": 1}
    (entry,) = user.get("/v1/transactions").json["items"]
    assert (entry["type"], entry["related_id"], entry["counterparty"]) == ("purchase", payment, "stripe")
    # Cancel goes back to the session's cancel_url and credits nothing
    location = urlsplit(cancelled.headers["location"])
    assert cancelled.status == 303 and location.path == "/shop"
    assert parse_qs(location.query) == {"c": [other.json["checkout_session_id"]]}
    assert assert_account_consistent(aws["dynamodb"], STACK, str(user.sub))["balance"] == 550
