"""Buying tokens in a real browser on `make run`: the console's Buy, the local checkout page, the balance.

No Stripe account: the local stack serves the fake Stripe API the checkout function calls
and the checkout page its `url` opens; Pay sends the signed `checkout.session.completed` to
the real webhook function, then Stripe's redirect brings the buyer back to the console.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.browser import Browser, chromium_or_skip
from tests.integration.local_stack import RunningStack, http, local_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(devkey_dir=tmp_path_factory.mktemp("devkey")) as running:
        yield running


def test_buy_pay_on_the_local_checkout_and_see_the_balance_then_cancel_another(
    stack: RunningStack, chromium: str, tmp_path: Path
) -> None:
    buyer = "browser-buyer"
    with Browser(chromium, tmp_path / "profile") as page:
        page.goto(f"{stack.url}/console/")
        page.fill("#picker input[name=user]", buyer)
        page.click("#picker button[type=submit]")
        page.wait("document.querySelector('#signed-in-as')?.innerText", what="signed in")
        page.js("location.hash = '#/buy'")
        page.click("button[data-package=starter]")

        page.wait("location.pathname.startsWith('/checkout/cs_')", what="the local checkout page")
        assert page.text("#package") == "Starter pack"
        assert page.text("#price") == "4.99 USD"
        page.click("#pay")
        balance = page.wait("document.querySelector('#new-balance')?.innerText", what="the new balance")
        assert balance == "100"
        assert page.js("location.pathname + location.hash").startswith("/console/#/buy?checkout=success")

        page.click("button[data-package=pro]")
        page.wait("location.pathname.startsWith('/checkout/cs_')", what="the second checkout page")
        page.click("#cancel")
        page.wait("location.hash.includes('checkout=cancel')", what="back after cancel")
        page.wait("document.querySelector('#main')?.innerText.includes('Checkout cancelled')", what="the notice")
        assert page.errors == []

    token = page_token(stack, buyer)
    status, _, body = http("GET", f"{stack.url}/v1/transactions", headers={"authorization": f"Bearer {token}"})
    assert status == 200
    assert [(e["type"], e["amount"], e["balance_after"]) for e in body["items"]] == [("purchase", 100, 100)]
    assert body["items"][0]["related_id"].startswith("pi_")


def page_token(stack: RunningStack, user: str) -> str:
    status, _, body = http("POST", f"{stack.url}/console/dev/token", body={"user": user, "admin": False})
    assert status == 200
    return str(body["token"])
