"""The local checkout: Stripe Checkout on this machine, for `make run` without a Stripe account.

Served by the local stack (``infra.local``) next to the API:

- ``/stripe/...``: the fake Stripe API (``infra.fake_stripe``); the checkout function reaches
  it through ``STRIPE_API_BASE=<local stack>/stripe`` and the key in the local secret.
- ``GET /checkout/<session id>``: the checkout page (the session's ``url``): package, price,
  **Pay** and **Cancel**.
- ``POST /checkout/<session id>/pay``: completes the session, sends the signed
  ``checkout.session.completed`` that Stripe would send to the real webhook function, then
  redirects (303) to the session's ``success_url``. ``.../cancel`` redirects to ``cancel_url``.
- ``GET /checkout/complete`` and ``/checkout/cancelled``: the template's default success and
  cancel pages, rewritten to this stack's origin.

With ``STRIPE_API_KEY=sk_test_...`` in the environment the real Stripe (test mode) is used
instead and ``/stripe`` is not involved; ``stripe listen`` forwards its events (docs/stripe.md).
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from infra.fake_stripe import FakePrice, FakeStripe

STRIPE_PREFIX = "/stripe"
CHECKOUT_PREFIX = "/checkout"
PATH_PREFIXES = (STRIPE_PREFIX + "/", CHECKOUT_PREFIX + "/")
API_KEY_ENV_VAR = "STRIPE_API_KEY"  # the Stripe CLI reads the same variable
_SESSION_PAGE = re.compile(r"^/checkout/(cs_[A-Za-z0-9_]{1,200})(/pay|/cancel)?$")
_SESSION_ID_IN_URL = "{CHECKOUT_SESSION_ID}"


@dataclass
class Page:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


# The fake's key: Stripe's shape, known to everyone, good only against the fake on this machine.
LOCAL_API_KEY = "sk_test_tokenledger_local_fake_stripe"


def local_api_key() -> str:
    return LOCAL_API_KEY


def real_api_key() -> str | None:
    """`STRIPE_API_KEY` when it is a test-mode key; a live key is refused on a laptop."""
    key = os.environ.get(API_KEY_ENV_VAR, "").strip()
    if not key:
        return None
    if not key.startswith(("sk_test_", "rk_test_")):
        raise ValueError(f"{API_KEY_ENV_VAR} must be a test-mode key (sk_test_... or rk_test_...) for the local stack")
    return key


def catalog_prices() -> dict[str, FakePrice]:
    """The Stripe Price ids the catalog names, priced as the catalog says (what Stripe should hold)."""
    from tokenledger.domain.catalog import load_catalog

    return {
        p.stripe_price_id: FakePrice(p.price.amount, p.price.currency, p.name)
        for p in load_catalog().packages
        if p.stripe_price_id
    }


def _page(title: str, body: str, status: int = 200) -> Page:
    document = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem;color:#1a1a1a}"
        ".card{border:1px solid #ddd;border-radius:.75rem;padding:1.5rem}.price{font-size:2rem;margin:.5rem 0}"
        "button{font-size:1rem;padding:.6rem 1.2rem;border-radius:.4rem;border:1px solid #635bff;cursor:pointer}"
        "#pay{background:#635bff;color:#fff}#cancel{background:#fff;color:#635bff}.note{color:#666;font-size:.85rem}"
        "code{word-break:break-all}</style></head><body>"
        f"{body}</body></html>"
    )
    return Page(status, document.encode())


def money(amount: int, currency: str) -> str:
    return f"{amount / 100:.2f} {currency.upper()}" if currency in ("usd", "eur", "gbp") else f"{amount} {currency}"


class LocalCheckout:
    """The fake Stripe and its pages, bound to one local stack."""

    def __init__(
        self,
        *,
        api: Any,
        signing_secret: str,
        api_key: str,
        base_url: str,
        log: Callable[[str], None] = print,
    ) -> None:
        self.api = api
        self.signing_secret = signing_secret
        self.base_url = base_url.rstrip("/")
        self.stripe = FakeStripe(api_key=api_key, checkout_url=self.base_url, prices=catalog_prices())
        self.log = log

    # ------------------------------------------------------------ routing
    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Page:
        if path.startswith(STRIPE_PREFIX + "/"):
            reply = self.stripe.handle(method, path.removeprefix(STRIPE_PREFIX), headers, body)
            return Page(reply.status, reply.encoded(), "application/json", reply.headers)
        if method == "GET" and path == CHECKOUT_PREFIX + "/complete":
            return self.complete_page(parse_qs(query).get("session_id", [""])[0])
        if method == "GET" and path == CHECKOUT_PREFIX + "/cancelled":
            return _page("Checkout cancelled", "<div class=card><h1>Checkout cancelled</h1><p>Nothing was paid.</p>")
        found = _SESSION_PAGE.match(path)
        if found is None:
            return _page("Not found", "<h1>Not found</h1>", 404)
        session_id, action = found.groups()
        actions: dict[tuple[str, str | None], Callable[[str], Page]] = {
            ("GET", None): self.checkout_page,
            ("POST", "/pay"): self.pay,
            ("POST", "/cancel"): self.cancel,
        }
        act = actions.get((method, action))
        if act is None:
            return _page("Not allowed", "<h1>Method not allowed</h1>", 405)
        return act(session_id)

    # ------------------------------------------------------------ pages
    def checkout_page(self, session_id: str) -> Page:
        session = self.stripe.session(session_id)
        if session is None:
            return _page("Unknown session", "<h1>No such checkout session</h1>", 404)
        name = html.escape(str(session.get("_product_name") or "Token package"))
        price = html.escape(money(session["amount_subtotal"], session["currency"]))
        if session["status"] != "open":
            state = html.escape(str(session["status"]))
            return _page("Checkout", f"<div class=card><h1>{name}</h1><p>This session is {state}.</p></div>", 410)
        sid = html.escape(session_id)
        package_id = html.escape(str(session["metadata"].get("package_id", "")))
        body = (
            "<div class=card>"
            f"<p class=note>tokenledger local checkout (no Stripe account; test mode)</p>"
            f'<h1 id=package data-package-id="{package_id}">{name}</h1>'
            f"<p class=price id=price>{price}</p>"
            f'<form method=post action="/checkout/{sid}/pay" style="display:inline">'
            "<button id=pay type=submit>Pay</button></form> "
            f'<form method=post action="/checkout/{sid}/cancel" style="display:inline">'
            "<button id=cancel type=submit>Cancel</button></form>"
            f"<p class=note>Session <code>{sid}</code>. Pay sends the signed "
            "<code>checkout.session.completed</code> Stripe would send to the webhook.</p></div>"
        )
        return _page(f"Pay {name}", body)

    def pay(self, session_id: str) -> Page:
        try:
            event = self.stripe.complete(session_id)
        except KeyError:
            return _page("Unknown session", "<h1>No such checkout session</h1>", 404)
        except ValueError as refused:
            return _page("Checkout", f"<h1>Cannot pay</h1><p>{html.escape(str(refused))}</p>", 409)
        session = event["data"]["object"]
        delivered = self.deliver(event)
        if delivered.status != 200:
            detail = html.escape(delivered.body[:500])
            self.log(f"checkout: the webhook answered {delivered.status} to {event['id']}: {delivered.body[:200]}")
            return _page("Webhook failed", f"<h1>The webhook answered {delivered.status}</h1><pre>{detail}</pre>", 502)
        user = session.get("metadata", {}).get("user_id")
        self.log(
            f"checkout: {user} paid {money(session['amount_subtotal'], session['currency'])} "
            f"({session['metadata'].get('package_id')}), session {session_id}, payment {session['payment_intent']}"
            f"  (refund: tokenledger stripe-refund {session['payment_intent']})"
        )
        return Page(303, b"", "text/plain", {"location": self._redirect(session["success_url"], session_id)})

    def cancel(self, session_id: str) -> Page:
        session = self.stripe.session(session_id)
        if session is None:
            return _page("Unknown session", "<h1>No such checkout session</h1>", 404)
        target = session.get("cancel_url") or session["success_url"]
        return Page(303, b"", "text/plain", {"location": self._redirect(target, session_id)})

    def complete_page(self, session_id: str) -> Page:
        session = self.stripe.session(session_id) if session_id else None
        if session is None or session["status"] != "complete":
            sid = html.escape(session_id)
            return _page(
                "Payment received",
                f"<div class=card><h1>Thank you</h1><p>Session <code>{sid}</code>.</p>"
                "<p class=note>Tokens arrive when Stripe's webhook reaches the stack.</p></div>",
            )
        user = str(session["metadata"].get("user_id", ""))
        balance = self.api.request("GET", "/v1/balance", claims={"sub": user})
        shown = balance.json.get("balance") if balance.status == 200 and isinstance(balance.json, dict) else "?"
        body = (
            "<div class=card><h1>Payment received</h1>"
            f"<p>{html.escape(str(session.get('_product_name')))} for <b>{html.escape(user)}</b>: "
            f"{html.escape(money(session['amount_subtotal'], session['currency']))}.</p>"
            f"<p class=price>Balance: <span id=balance>{html.escape(str(shown))}</span> tokens</p>"
            f"<p class=note>Payment <code id=payment>{html.escape(str(session['payment_intent']))}</code>; "
            f"refund it with <code>tokenledger stripe-refund {html.escape(str(session['payment_intent']))}</code>.</p>"
            "</div>"
        )
        return _page("Payment received", body)

    # ------------------------------------------------------------ Stripe's side
    def deliver(self, event: dict[str, Any]) -> Any:
        """Sign `event` as Stripe does and POST it to the webhook route (the real handler)."""
        from infra.stripe_events import WEBHOOK_PATH, signed_delivery

        payload, headers = signed_delivery(event, self.signing_secret)
        return self.api.request("POST", WEBHOOK_PATH, headers=headers, body=payload)

    @staticmethod
    def _redirect(url: str, session_id: str) -> str:
        """Where Stripe sends the buyer. The function checked the URL; the fake's API key is public, so check again."""
        from tokenledger.domain.errors import RedirectNotAllowed
        from tokenledger.domain.redirects import InvalidOrigin, check_redirect, parse_allowed_origins

        target = url.replace(_SESSION_ID_IN_URL, session_id)
        try:
            allowed = parse_allowed_origins(os.environ.get("CHECKOUT_ALLOWED_ORIGINS", ""))
            return check_redirect(target, allowed, field="redirect")
        except (RedirectNotAllowed, InvalidOrigin):
            return "/checkout/cancelled"
