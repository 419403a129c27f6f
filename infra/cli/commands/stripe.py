"""Stripe, locally: ``stripe-purchase`` posts a signed ``checkout.session.completed`` to the webhook."""

from __future__ import annotations

import argparse
import os

from infra import devauth
from infra.cli.core import Commands, text_value, user_id
from infra.cli.errors import EXIT_OK, ApiRefused, UsageError
from infra.cli.output import emit_json
from infra.stripe_events import checkout_completed_event, local_catalog

STRIPE_SECRET_ENV_VAR = "STRIPE_WEBHOOK_SECRET"


def register(commands: Commands) -> None:
    p = commands.add(
        "stripe-purchase", stripe_purchase, help="post a signed checkout.session.completed event for a user and package"
    )
    p.add_argument("user", type=user_id, help="who pays (the session's metadata.user_id)")
    p.add_argument("--package", default="starter", help="package_id from the catalog (default: starter)")
    add_signing_secret(p)


def add_signing_secret(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--signing-secret",
        type=text_value,
        help=f"webhook signing secret (env {STRIPE_SECRET_ENV_VAR}; default: the local stack's development secret)",
    )


def signing_secret(args: argparse.Namespace) -> str:
    return args.signing_secret or os.environ.get(STRIPE_SECRET_ENV_VAR) or devauth.stripe_webhook_secret()


def stripe_purchase(args: argparse.Namespace) -> int:
    client = args.client
    catalog = {p["package_id"]: p for p in local_catalog()}
    package = catalog.get(args.package)
    if package is None:
        raise UsageError(f"unknown package {args.package!r}; the catalog has: {', '.join(sorted(catalog))}")
    event = checkout_completed_event(args.user, package)
    reply = client.post_stripe_event(event, signing_secret(args))
    if args.json:
        emit_json({"status": reply.status, "event": event, "response": reply.body})
        return EXIT_OK
    session = event["data"]["object"]
    print(
        f"Stripe accepted {event['type']} {event['id']} (HTTP {reply.status}): {args.user} paid "
        f"{package['price']['amount']} {package['price']['currency']} for {package['name']} "
        f"({package['tokens']} tokens), session {session['id']}, payment {session['payment_intent']}"
    )
    print(
        f"refund it: tokenledger stripe-refund {session['payment_intent']} --charge-amount {package['price']['amount']}"
    )
    if args.token:
        return EXIT_OK  # a real token belongs to someone: it cannot read this user's balance
    try:
        balance = client.balance(args.user)
    except ApiRefused:
        return EXIT_OK
    print(f"balance of {args.user} now {balance['balance']}")
    return EXIT_OK
