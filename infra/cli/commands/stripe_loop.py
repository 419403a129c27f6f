"""The Stripe development loop: buy through the real route, send any event file, refund or dispute a payment.

    tokenledger checkout alice --package starter [--pay]   # POST /v1/checkout-sessions; --pay: the local page's Pay
    tokenledger stripe-event tests/events/stripe_charge_refunded.json [--new-id]
    tokenledger stripe-refund pi_... [--amount 200]          # cumulative amount_refunded, default the whole charge
    tokenledger stripe-dispute pi_...

Events are signed like ``stripe-purchase``'s (``--signing-secret``, env ``STRIPE_WEBHOOK_SECRET``,
default the local stack's development secret). A payment's amount comes from ``--charge-amount``
or, on the local stack, from its fake Stripe (``GET /stripe/v1/payment_intents/<id>``).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from infra.checkout_local import LOCAL_API_KEY, STRIPE_PREFIX
from infra.cli.client import new_key
from infra.cli.commands.stripe import add_signing_secret, signing_secret
from infra.cli.core import Commands, acting_user, add_user_argument, whole_number
from infra.cli.errors import EXIT_OK, ApiRefused, UsageError
from infra.cli.output import emit_json
from infra.stripe_events import charge_refunded_event, dispute_created_event

EVENT_FILE_BYTES_MAX = 512 * 1024  # what the webhook accepts
AMOUNT_MAX = 99_999_999  # Stripe's limit on one charge, in minor units
LOOKUP_TIMEOUT_S = 5
_PAYMENT = re.compile(r"^pi_[A-Za-z0-9_]{1,200}$")
minor_units = whole_number(1, AMOUNT_MAX)


def register(commands: Commands) -> None:
    p = commands.add("checkout", checkout, help="buy a package through POST /v1/checkout-sessions (prints its url)")
    add_user_argument(p)
    p.add_argument("--package", default="starter", help="package_id from the catalog (default: starter)")
    p.add_argument("--key", help="Idempotency-Key (default: a new one; reuse one to get the same session)")
    p.add_argument("--pay", action="store_true", help="local stack: press Pay on the local checkout page too")

    p = commands.add("stripe-event", stripe_event, help="post any Stripe event JSON file, signed, to the webhook")
    p.add_argument("file", type=Path, help="an event as Stripe sends it, e.g. tests/events/stripe_*.json (- for stdin)")
    p.add_argument("--new-id", action="store_true", help="give it a fresh evt_ id (a new event, not a redelivery)")
    add_signing_secret(p)

    p = commands.add("stripe-refund", stripe_refund, help="post charge.refunded for a payment (pi_...)")
    p.add_argument("payment", type=payment_id, help="the payment intent (printed after a purchase)")
    p.add_argument("--amount", type=minor_units, help="cumulative amount refunded, minor units (default: all)")
    add_charge_amount(p)
    add_signing_secret(p)

    p = commands.add("stripe-dispute", stripe_dispute, help="post charge.dispute.created for a payment (pi_...)")
    p.add_argument("payment", type=payment_id, help="the payment intent (printed after a purchase)")
    add_charge_amount(p)
    add_signing_secret(p)


def payment_id(text: str) -> str:
    if not _PAYMENT.match(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a payment intent id (pi_...)")
    return text


def add_charge_amount(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--charge-amount",
        type=minor_units,
        help="the payment's amount in minor units (default: asked from the local stack's fake Stripe)",
    )


# ---------------------------------------------------------------- checkout
def checkout(args: argparse.Namespace) -> int:
    client = args.client
    user = acting_user(args)
    reply = client.request(
        "POST",
        "/v1/checkout-sessions",
        user=user,
        body={"package_id": args.package},
        headers={"idempotency-key": args.key or new_key()},
    )
    session = reply.body
    paid: dict[str, Any] | None = None
    if args.pay:
        paid = press_pay(client.base_url, session["url"])
    if args.json:
        emit_json({"status": reply.status, "replayed": reply.replayed, "session": session, "paid": paid})
        return EXIT_OK
    price = session["price"]
    print(
        f"checkout session {session['checkout_session_id']}: {session['package_id']} ({session['tokens']} tokens) "
        f"for {price['amount']} {price['currency']}, until {session['expires_at']}"
    )
    if paid is None:
        print(f"open it to pay: {session['url']}")
        return EXIT_OK
    print(f"paid: payment {paid['payment']}  (refund: tokenledger stripe-refund {paid['payment']})")
    if user:
        print(f"balance of {user} now {client.balance(user)['balance']}")
    return EXIT_OK


def press_pay(base_url: str, session_url: str) -> dict[str, Any]:
    """POST the local checkout page's Pay (what the button does); the payment id it made."""
    if not session_url.startswith(base_url.rstrip("/") + "/checkout/"):
        raise UsageError(f"--pay works on the local checkout page only; open {session_url} to pay")
    request = urllib.request.Request(session_url + "/pay", data=b"", method="POST")  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(request, timeout=LOOKUP_TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code != 303:
            raise ApiRefused(error.code, error.read().decode("utf-8", "replace")[:300]) from None
    except urllib.error.URLError as error:
        raise UsageError(f"cannot reach the checkout page: {error.reason}") from None
    session_id = session_url.rstrip("/").rsplit("/", 1)[-1]
    session = _fake_stripe_get(base_url, f"/v1/checkout/sessions/{session_id}")
    if session is None or not session.get("payment_intent"):
        raise UsageError("the local checkout did not record the payment")
    return {"session": session_id, "payment": session["payment_intent"]}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


# ---------------------------------------------------------------- events
def stripe_event(args: argparse.Namespace) -> int:
    raw = sys.stdin.buffer.read(EVENT_FILE_BYTES_MAX + 1) if str(args.file) == "-" else _read(args.file)
    if len(raw) > EVENT_FILE_BYTES_MAX:
        raise UsageError(f"{args.file}: larger than any Stripe event ({EVENT_FILE_BYTES_MAX} bytes)")
    try:
        event = json.loads(raw)
    except ValueError as error:
        raise UsageError(f"{args.file}: not JSON ({error})") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise UsageError(f"{args.file}: not a Stripe event (an object with id, type and data.object)")
    if args.new_id:
        event["id"] = f"evt_{secrets.token_hex(12)}"
    return _post(args, event)


def _read(path: Path) -> bytes:
    with path.open("rb") as handle:
        return handle.read(EVENT_FILE_BYTES_MAX + 1)


def stripe_refund(args: argparse.Namespace) -> int:
    amount = charge_amount(args)
    refunded = amount if args.amount is None else args.amount
    if refunded > amount:
        raise UsageError(f"--amount {refunded} is more than the charge's {amount}")
    return _post(args, charge_refunded_event(args.payment, amount=amount, amount_refunded=refunded))


def stripe_dispute(args: argparse.Namespace) -> int:
    return _post(args, dispute_created_event(args.payment, amount=charge_amount(args)))


def charge_amount(args: argparse.Namespace) -> int:
    if args.charge_amount is not None:
        return int(args.charge_amount)
    intent = _fake_stripe_get(args.client.base_url, f"/v1/payment_intents/{args.payment}")
    if intent is None or not isinstance(intent.get("amount"), int):
        raise UsageError(
            f"the local stack does not know {args.payment} (paid elsewhere, or the stack restarted): "
            "pass --charge-amount, the payment's amount in minor units (cents)"
        )
    return int(intent["amount"])


def _fake_stripe_get(base_url: str, path: str) -> dict[str, Any] | None:
    """GET on the local stack's fake Stripe; None when there is none or it does not know the object."""
    request = urllib.request.Request(  # noqa: S310 - the CLI's own --url
        base_url.rstrip("/") + STRIPE_PREFIX + path, headers={"authorization": f"Bearer {LOCAL_API_KEY}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=LOOKUP_TIMEOUT_S) as response:  # noqa: S310
            body = json.loads(response.read())
    except (urllib.error.URLError, ValueError, TimeoutError):
        return None
    return body if isinstance(body, dict) else None


def _post(args: argparse.Namespace, event: dict[str, Any]) -> int:
    reply = args.client.post_stripe_event(event, signing_secret(args))
    if args.json:
        emit_json({"status": reply.status, "event": event, "response": reply.body})
        return EXIT_OK
    obj = event.get("data", {}).get("object", {}) if isinstance(event.get("data"), dict) else {}
    payment = obj.get("payment_intent") if isinstance(obj, dict) else None
    print(f"the webhook accepted {event['type']} {event.get('id')} (HTTP {reply.status})" + _about(payment))
    return EXIT_OK


def _about(payment: Any) -> str:
    return f" for payment {payment}" if isinstance(payment, str) else ""
