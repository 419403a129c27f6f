"""What ``make run`` adds around the served stack: demo data (``--seed``) and the first screen it prints."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from infra.cli.client import DEFAULT_URL
from infra.stripe_events import WEBHOOK_PATH, checkout_completed_event, local_catalog

if TYPE_CHECKING:
    from infra.local import LocalStack

CLI_DEFAULT_PORT = urlsplit(DEFAULT_URL).port


def seed_demo(url: str, local: LocalStack, *, stream: Any = None) -> list[dict[str, Any]]:
    """A few users with purchases, commitments and a payout, written through the API itself."""
    from infra.cli import ApiClient, ApiRefused, Progress

    client = ApiClient(url)
    packages = {p["package_id"]: p for p in local_catalog()}
    has_stripe = local.api.match("POST", WEBHOOK_PATH) is not None
    steps: list[tuple[str, str, Any]] = [
        ("alice", "purchase", "standard"),
        ("alice", "commit", ("p-worldcup-final", 120)),
        ("alice", "commit", ("p-moon-base-2030", 30)),
        ("alice", "payout", ("p-worldcup-final", 240)),
        ("bob", "purchase", "starter"),
        ("bob", "commit", ("p-worldcup-final", 60)),
        ("bob", "commit", ("p-rain-tomorrow", 15)),
        ("carol", "grant", 50),
    ]
    with Progress("seeding demo data", len(steps), stream=stream) as progress:
        for number, (user, action, arg) in enumerate(steps):
            # Fixed keys and payment ids: seeding kept data again (--data-dir) moves nothing twice.
            key = f"demo-seed-{number}"
            if action == "purchase":
                credited = False
                if has_stripe:
                    event = checkout_completed_event(user, packages[arg], payment_id=f"demo_{user}_{arg}")
                    with contextlib.suppress(ApiRefused):
                        client.post_stripe_event(event, local.stripe_signing_secret)
                        credited = True
                if not credited:  # no Stripe function: an admin grant stands in for the purchase
                    reason = f"demo: stands in for a Stripe purchase of {arg}"
                    client.admin_entry(user, "grant", packages[arg]["tokens"], reason=reason, key=key)
            elif action == "commit":
                prediction, amount = arg
                client.commit(user, prediction, amount, key=key)
            elif action == "payout":
                prediction, amount = arg
                reason = "demo: prediction won"
                client.admin_entry(user, "payout", amount, reason=reason, related_id=prediction, key=key)
            else:
                client.admin_entry(user, "grant", arg, reason="demo: welcome grant", key=key)
            progress.advance()
    return [client.balance(user) for user in ("alice", "bob", "carol")]


# ---------------------------------------------------------------- the first screen
def _cli_command() -> str:
    """How to call the console script from here: `.venv/bin/tokenledger` if that is where it is."""
    script = Path(sys.executable).parent / "tokenledger"
    if not script.exists():
        return "tokenledger"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def first_screen(url: str, local: LocalStack, seeded: list[dict[str, Any]] | None) -> str:
    cli = _cli_command()
    engine = {
        "moto": "embedded moto (DynamoDB, S3, Secrets Manager), in memory",
        "dynamodb-local": f"DynamoDB Local at {local.dynamodb_endpoint}"
        + (
            " (yours, from AWS_ENDPOINT_URL_DYNAMODB)"
            if local.external_dynamodb
            else (f", data in {local.data_dir}" if local.data_dir else ", in memory")
        )
        + "; S3 and Secrets Manager on embedded moto",
        "endpoint": f"{local.dynamodb_endpoint} (AWS_ENDPOINT_URL), no moto",
    }[local.engine]
    routes = local.stack.routes()
    lines = [
        "",
        "tokenledger local stack: the real Lambda handlers behind a local API Gateway",
        "",
        f"  API      {url}",
        f"  Docs     {url}/docs   (OpenAPI document: {url}/openapi.json)",
        f"  Console  {url}/console   (pick a user; `ops` is in the admin group)",
        f"  Engine   {engine}",
        f"  Routes   {len(routes)} from template.yaml, each behind a bearer token unless marked:",
    ]
    lines += [f"             {r.method:<5} {r.path}{'' if r.authorized else '   (no JWT)'}" for r in routes]
    lines.append(
        "  Checkout "
        + (
            f"the real Stripe (test mode, STRIPE_API_KEY); events: stripe listen --forward-to {url}/v1/webhooks/stripe"
            if local.stripe_api_key
            else f"local: POST /v1/checkout-sessions answers a {url}/checkout/cs_... page (docs/stripe.md)"
        )
    )
    if local.swagger_error:
        lines.append(f"  Note     /docs without Swagger UI: {local.swagger_error}")
    if local.console is not None and local.console.vendor_error:
        lines.append(f"  Note     /console without charts: {local.console.vendor_error}")
    if local.openapi_error:
        lines.append(f"  Note     /openapi.json unavailable: {local.openapi_error}")
    lines += [
        "",
        "Try it from another terminal in this folder:",
        f"  export TOKENLEDGER_URL={url}   # the CLI's API (its default is port {CLI_DEFAULT_PORT})",
        f"  TOKEN=$({cli} token alice)",
        f'  curl -s -H "Authorization: Bearer $TOKEN" {url}/v1/balance',
        f"  {cli} stripe-purchase alice --package starter",
        f"  {cli} history alice",
    ]
    if seeded:
        summary = ", ".join(f"{b['user_id']} {b['balance']}" for b in seeded)
        lines += ["", f"Demo data: {summary} tokens (admin: `{cli} token ops --admin`)"]
    lines += [
        "",
        "Walk-through: docs/local.md.  Ctrl-C stops"
        + (" (moto keeps data in memory: it goes too)." if local.engine == "moto" else "."),
        "",
    ]
    return "\n".join(lines)
