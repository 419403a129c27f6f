"""``tokenledger``: the ops command line, over HTTP, against the local stack or any deployment.

    tokenledger token alice                 # a development JWT (``--admin`` for the admin group)
    tokenledger balance alice
    tokenledger history alice --limit 50
    tokenledger commit alice 25 --prediction p-9
    tokenledger grant alice 100 --reason "support ticket 42"
    tokenledger stripe-purchase alice --package starter
    tokenledger audit alice bob carol       # or: --file ids.txt (``-`` for stdin)

``--url`` (or ``TOKENLEDGER_URL``) picks the API, default ``http://127.0.0.1:3000`` (``make run``).
Against the local stack the CLI signs its own development tokens; against a deployment pass
a real one with ``--token`` (or ``TOKENLEDGER_TOKEN``). Tables for people by default,
``--json`` for scripts; long work shows a progress bar on a terminal.

Exit codes: 0 done, 1 the API refused (the problem is printed), 2 usage or connection error,
3 an audit found an inconsistent account.

Other modules may add a subcommand: ``infra.settle.add_parser(subparsers)`` is called if that
module exists; its parser must ``set_defaults(func=...)``, and ``func(args)`` gets the parsed
arguments with ``args.client`` (an ``ApiClient``) and ``args.json`` set, and returns an exit code.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import importlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TextIO
from urllib.parse import quote, urlencode

from infra import devauth

DEFAULT_URL = "http://127.0.0.1:3000"
URL_ENV_VAR = "TOKENLEDGER_URL"
TOKEN_ENV_VAR = "TOKENLEDGER_TOKEN"
STRIPE_SECRET_ENV_VAR = "STRIPE_WEBHOOK_SECRET"
ADMIN_SUB_DEFAULT = "ops"
ADMIN_GROUP = "admin"
HTTP_TIMEOUT_S = 30
ATTEMPTS_MAX = 3
RETRY_DELAY_S = 0.5
HISTORY_PAGE_MAX = 100
HISTORY_ENTRIES_MAX = 10_000
AUDIT_USERS_MAX = 10_000
STRIPE_API_VERSION = "2024-06-20"
STRIPE_WEBHOOK_PATH = "/v1/webhooks/stripe"
ADMIN_ENTRY_TYPES = ("grant", "payout", "refund", "adjustment")
ENTRY_TYPES = ("purchase", "commitment", "payout", "refund", "grant", "adjustment", "reversal", "chargeback")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_INCONSISTENT = 3


# ---------------------------------------------------------------- HTTP
class CliError(Exception):
    """A failure to report on stderr, with its exit code."""

    exit_code = EXIT_USAGE


class ApiRefused(CliError):
    """The API answered with an error status (a problem+json body, usually)."""

    exit_code = EXIT_REFUSED

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        problem = body if isinstance(body, dict) else {}
        self.code = str(problem.get("code") or problem.get("message") or "error")
        detail = problem.get("detail") or (body if isinstance(body, str) else "")
        super().__init__(f"HTTP {status} {self.code}: {detail}".rstrip(": "))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed", "").lower() == "true"


@dataclass
class ApiClient:
    """The HTTP API as a caller sees it; signs development tokens unless given one."""

    base_url: str = DEFAULT_URL
    token: str | None = None
    admin_sub: str = ADMIN_SUB_DEFAULT
    timeout_s: float = HTTP_TIMEOUT_S
    _tokens: dict[tuple[str, bool], str] = field(default_factory=dict, repr=False)

    def bearer(self, sub: str | None, *, admin: bool = False) -> str:
        if self.token:
            return self.token
        if sub is None:
            raise CliError("a user is needed to sign a development token (or pass --token)")
        key = (sub, admin)
        if key not in self._tokens:
            self._tokens[key] = devauth.mint(sub, [ADMIN_GROUP] if admin else [])
        return self._tokens[key]

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        admin: bool = False,
        query: dict[str, Any] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        authenticate: bool = True,
    ) -> Reply:
        """One call; retried on connection failures with the very same headers and body.

        A POST that moves tokens carries an Idempotency-Key, so a retry after a lost answer
        moves nothing twice.
        """
        url = self.base_url.rstrip("/") + path
        encoded = urlencode({k: v for k, v in (query or {}).items() if v is not None})
        if encoded:
            url += "?" + encoded
        all_headers = {"accept": "application/json", **(headers or {})}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("content-type", "application/json")
        if authenticate:
            all_headers["authorization"] = "Bearer " + self.bearer(user if not admin else self.admin_sub, admin=admin)
        last_error: Exception | None = None
        for attempt in range(ATTEMPTS_MAX):
            request = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                    return self._reply(response.status, dict(response.headers.items()), response.read())
            except urllib.error.HTTPError as error:
                reply = self._reply(error.code, dict(error.headers.items()), error.read())
                raise ApiRefused(reply.status, reply.body) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last_error = error
                if attempt + 1 < ATTEMPTS_MAX:
                    time.sleep(RETRY_DELAY_S * (attempt + 1))
        hint = " (is `make run` running?)" if self.base_url.startswith(DEFAULT_URL) else ""
        raise CliError(f"cannot reach {self.base_url}{hint}: {last_error}")

    @staticmethod
    def _reply(status: int, headers: dict[str, str], payload: bytes) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        text = payload.decode("utf-8", "replace")
        body: Any = text
        if text and "json" in lowered.get("content-type", ""):
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        return Reply(status, lowered, body if text else None)

    # ------------------------------------------------------------ the routes
    def packages(self, user: str) -> list[dict[str, Any]]:
        packages: list[dict[str, Any]] = self.request("GET", "/v1/packages", user=user).body["packages"]
        return packages

    def balance(self, user: str, *, required: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", "/v1/balance", user=user, query={"required": required}).body
        return body

    def history(
        self,
        user: str,
        *,
        limit: int,
        entry_type: str | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, following `next_cursor` until `limit` entries or the end."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < limit:
            query = {"limit": min(HISTORY_PAGE_MAX, limit - len(items)), "cursor": cursor, "type": entry_type}
            page = self.request("GET", "/v1/transactions", user=user, query=query).body
            items.extend(page["items"])
            if on_page:
                on_page(len(page["items"]))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    def commit(self, user: str, prediction_id: str, amount: int, *, key: str | None = None) -> Reply:
        return self.request(
            "POST",
            "/v1/commitments",
            user=user,
            body={"prediction_id": prediction_id, "amount": amount},
            headers={"idempotency-key": key or new_key()},
        )

    def admin_entry(
        self,
        user: str,
        entry_type: str,
        amount: int,
        *,
        reason: str,
        related_id: str | None = None,
        key: str | None = None,
    ) -> Reply:
        body: dict[str, Any] = {"type": entry_type, "amount": amount, "reason": reason}
        if related_id:
            body["related_id"] = related_id
        return self.request(
            "POST",
            f"/v1/admin/accounts/{quote(user, safe='')}/entries",
            admin=True,
            body=body,
            headers={"idempotency-key": key or new_key()},
        )

    def audit(self, user: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"/v1/admin/accounts/{quote(user, safe='')}/audit", admin=True).body
        return body

    def post_stripe_event(self, event: dict[str, Any], secret: str) -> Reply:
        payload = json.dumps(event, separators=(",", ":")).encode()
        return self.request(
            "POST",
            STRIPE_WEBHOOK_PATH,
            raw=payload,
            headers={"content-type": "application/json", "stripe-signature": stripe_signature(payload, secret)},
            authenticate=False,
        )


def new_key() -> str:
    return f"cli-{uuid.uuid4()}"


# ---------------------------------------------------------------- Stripe events
def stripe_signature(payload: bytes, secret: str, *, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header Stripe sends: `t=<unix>,v1=<HMAC-SHA256 of "t.payload">`."""
    t = int(timestamp if timestamp is not None else time.time())
    signed = f"{t}.".encode() + payload
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def checkout_completed_event(
    user: str, package: dict[str, Any], *, now: int | None = None, payment_id: str | None = None
) -> dict[str, Any]:
    """A `checkout.session.completed` event as Stripe sends it, paid, for one package.

    `payment_id` names the payment (Stripe credits once per payment); default a new one.
    """
    created = int(now if now is not None else time.time())
    payment = payment_id or secrets.token_hex(12)
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "api_version": STRIPE_API_VERSION,
        "created": created,
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
        "data": {
            "object": {
                "id": f"cs_test_{payment}",
                "object": "checkout.session",
                "mode": "payment",
                "status": "complete",
                "payment_status": "paid",
                "amount_subtotal": package["price"]["amount"],
                "amount_total": package["price"]["amount"],
                "currency": package["price"]["currency"],
                "client_reference_id": user,
                "customer": None,
                "payment_intent": f"pi_{payment}",
                "created": created,
                "livemode": False,
                "metadata": {"user_id": user, "package_id": package["package_id"]},
            }
        },
    }


def local_catalog() -> list[dict[str, Any]]:
    from tokenledger.domain.catalog import load_catalog

    return [p.model_dump() for p in load_catalog().packages]


# ---------------------------------------------------------------- output
class Progress:
    """A one-line progress bar on a terminal's stderr; silent when stderr is not a terminal."""

    WIDTH = 30

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.total:
            filled = int(self.WIDTH * min(self.done, self.total) / self.total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        else:
            self.stream.write(f"\r{self.label} {self.done}")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, out: TextIO | None = None) -> None:
    """A plain text table; numbers right-aligned."""
    out = out or sys.stdout
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), int) for row in rows) and bool(rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out.write(line(list(columns)) + "\n")
    out.write(line(["-" * w for w in widths]) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def signed(amount: int) -> str:
    return f"{amount:+d}"


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


# ---------------------------------------------------------------- commands
def cmd_token(args: argparse.Namespace) -> int:
    groups = list(args.group or [])
    if args.admin:
        groups.append(ADMIN_GROUP)
    token = devauth.mint(args.user, groups, ttl_s=args.ttl)
    if args.json:
        claims = devauth.verify(token)
        emit_json({"token": token, "claims": claims, "gateway_claims": devauth.gateway_claims(claims)})
    else:
        print(token)
    return EXIT_OK


def cmd_balance(args: argparse.Namespace) -> int:
    client: ApiClient = args.client
    body = client.balance(args.user, required=args.required)
    if args.json:
        emit_json(body)
        return EXIT_OK
    table([body], [c for c in ("user_id", "balance", "version", "updated_at", "sufficient", "shortfall") if c in body])
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    client: ApiClient = args.client
    with Progress("reading history", args.limit if args.limit > HISTORY_PAGE_MAX else None) as progress:
        items = client.history(args.user, limit=args.limit, entry_type=args.type, on_page=progress.advance)
    if args.json:
        emit_json({"items": items})
        return EXIT_OK
    rows = [
        {**item, "amount": signed(item["amount"]), "related_id": item.get("related_id") or item.get("reverses")}
        for item in items
    ]
    table(
        rows,
        ["seq", "created_at", "type", "amount", "balance_after", "counterparty", "related_id", "entry_id"],
    )
    if not items:
        print(f"(no entries for {args.user})")
    return EXIT_OK


def _print_write(args: argparse.Namespace, reply: Reply, verb: str) -> int:
    if args.json:
        emit_json({"status": reply.status, "replayed": reply.replayed, **reply.body})
        return EXIT_OK
    entry = reply.body["entry"]
    print(
        f"{verb}: {signed(entry['amount'])} tokens for {entry['user_id']} "
        f"(entry {entry['entry_id']}, seq {entry['seq']}); balance now {reply.body['balance']}"
    )
    if reply.replayed:
        print("replayed: this Idempotency-Key was used before; nothing moved this time")
    return EXIT_OK


def cmd_commit(args: argparse.Namespace) -> int:
    reply = args.client.commit(args.user, args.prediction, args.amount, key=args.key)
    return _print_write(args, reply, "committed")


def cmd_grant(args: argparse.Namespace) -> int:
    amount = args.amount
    reply = args.client.admin_entry(
        args.user, args.type, amount, reason=args.reason, related_id=args.related_id, key=args.key
    )
    return _print_write(args, reply, args.type)


def cmd_stripe_purchase(args: argparse.Namespace) -> int:
    client: ApiClient = args.client
    catalog = {p["package_id"]: p for p in local_catalog()}
    package = catalog.get(args.package)
    if package is None:
        raise CliError(f"unknown package {args.package!r}; the catalog has: {', '.join(sorted(catalog))}")
    secret = args.signing_secret or os.environ.get(STRIPE_SECRET_ENV_VAR) or devauth.stripe_webhook_secret()
    event = checkout_completed_event(args.user, package)
    reply = client.post_stripe_event(event, secret)
    if args.json:
        emit_json({"status": reply.status, "event": event, "response": reply.body})
        return EXIT_OK
    session = event["data"]["object"]
    print(
        f"Stripe accepted {event['type']} {event['id']} (HTTP {reply.status}): {args.user} paid "
        f"{package['price']['amount']} {package['price']['currency']} for {package['name']} "
        f"({package['tokens']} tokens), session {session['id']}"
    )
    try:
        balance = client.balance(args.user)
    except ApiRefused:
        return EXIT_OK  # e.g. a real deployment where --token belongs to someone else
    print(f"balance of {args.user} now {balance['balance']}")
    return EXIT_OK


def _audit_users(args: argparse.Namespace) -> list[str]:
    users = list(args.users or [])
    if args.file:
        handle = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
        with handle:
            users.extend(line.strip() for line in handle if line.strip() and not line.startswith("#"))
    users = list(dict.fromkeys(users))
    if not users:
        raise CliError("name at least one user (or --file ids.txt, - for stdin)")
    if len(users) > AUDIT_USERS_MAX:
        raise CliError(f"at most {AUDIT_USERS_MAX} users per run")
    return users


def cmd_audit(args: argparse.Namespace) -> int:
    client: ApiClient = args.client
    users = _audit_users(args)
    reports = []
    with Progress("auditing", len(users)) as progress:
        for user in users:
            reports.append(client.audit(user))
            progress.advance()
    bad = [r for r in reports if not r.get("consistent")]
    if args.json:
        emit_json({"accounts": reports, "consistent": not bad})
    else:
        rows = [
            {
                **r,
                "issues": "; ".join(f"{i.get('kind')}: {i.get('detail')}" for i in r.get("inconsistencies", [])),
            }
            for r in reports
        ]
        columns = ["user_id", "stored_balance", "computed_balance", "version", "entries_checked", "consistent"]
        table(rows, [*columns, "issues"])
        print(f"{len(reports) - len(bad)} of {len(reports)} accounts consistent")
    return EXIT_INCONSISTENT if bad else EXIT_OK


# ---------------------------------------------------------------- parser
def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _signed_int(text: str) -> int:
    return int(text)


def _common_options(defaults: bool) -> argparse.ArgumentParser:
    """--url, --token, --json: accepted before or after the subcommand."""
    parent = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    parent.add_argument(
        "--url",
        default=default(os.environ.get(URL_ENV_VAR, DEFAULT_URL)),
        help=f"API base URL (env {URL_ENV_VAR}; default {DEFAULT_URL})",
    )
    parent.add_argument(
        "--token",
        default=default(os.environ.get(TOKEN_ENV_VAR)),
        help=f"bearer token to use (env {TOKEN_ENV_VAR}); default: sign a local development token",
    )
    parent.add_argument(
        "--as",
        dest="admin_sub",
        default=default(ADMIN_SUB_DEFAULT),
        help="the admin's user id for admin routes (with development tokens)",
    )
    parent.add_argument("--json", action="store_true", default=default(False), help="print JSON for scripts")
    return parent


def _optional_settle() -> ModuleType | None:
    """`infra.settle`, if that module exists (built separately) and offers a subcommand."""
    try:
        settle = importlib.import_module("infra.settle")
    except ModuleNotFoundError as error:
        if error.name == "infra.settle":
            return None
        raise
    return settle if hasattr(settle, "add_parser") else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tokenledger",
        description="Operate a tokenledger API: the local stack (`make run`) or any deployment.",
        parents=[_common_options(defaults=True)],
        epilog="Walk-through: docs/local.md",
    )
    common = [_common_options(defaults=False)]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("token", parents=common, help="sign a development JWT for a user")
    p.add_argument("user")
    p.add_argument("--admin", action="store_true", help="put the user in the admin group")
    p.add_argument("--group", action="append", help="another cognito group (repeatable)")
    p.add_argument("--ttl", type=_positive, default=devauth.TOKEN_TTL_S_DEFAULT, help="lifetime in seconds")
    p.set_defaults(func=cmd_token)

    p = sub.add_parser("balance", parents=common, help="a user's balance")
    p.add_argument("user")
    p.add_argument("--required", type=int, help="also tell whether the balance covers N tokens")
    p.set_defaults(func=cmd_balance)

    p = sub.add_parser("history", parents=common, help="a user's entries, newest first")
    p.add_argument("user")
    p.add_argument("--limit", type=_positive, default=20, help=f"how many entries (max {HISTORY_ENTRIES_MAX})")
    p.add_argument("--type", choices=ENTRY_TYPES, help="only entries of this type")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("commit", parents=common, help="commit a user's tokens to a prediction")
    p.add_argument("user")
    p.add_argument("amount", type=_positive)
    p.add_argument("--prediction", required=True, help="the prediction id")
    p.add_argument("--key", help="Idempotency-Key (default: a new one; reuse one to retry safely)")
    p.set_defaults(func=cmd_commit)

    p = sub.add_parser("grant", parents=common, help="admin: credit (or adjust) a user's tokens with a reason")
    p.add_argument("user")
    p.add_argument("amount", type=_signed_int, help="tokens (signed for --type adjustment)")
    p.add_argument("--reason", required=True)
    p.add_argument("--type", choices=ADMIN_ENTRY_TYPES, default="grant")
    p.add_argument("--related-id", help="e.g. the prediction of a payout or refund")
    p.add_argument("--key", help="Idempotency-Key (default: a new one; reuse one to retry safely)")
    p.set_defaults(func=cmd_grant)

    p = sub.add_parser(
        "stripe-purchase",
        parents=common,
        help="post a signed checkout.session.completed event for a user and package",
    )
    p.add_argument("user")
    p.add_argument("--package", default="starter", help="package_id from the catalog (default: starter)")
    p.add_argument(
        "--signing-secret",
        help=f"webhook signing secret (env {STRIPE_SECRET_ENV_VAR}; default: the local stack's development secret)",
    )
    p.set_defaults(func=cmd_stripe_purchase)

    p = sub.add_parser("audit", parents=common, help="admin: check accounts' chains and stored balances")
    p.add_argument("users", nargs="*", metavar="user")
    p.add_argument("--file", help="read user ids from a file, one a line (- for stdin)")
    p.set_defaults(func=cmd_audit)

    settle = _optional_settle()
    if settle is not None:
        settle.add_parser(sub)
    return parser


def main(argv: Iterable[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if getattr(args, "limit", 0) > HISTORY_ENTRIES_MAX:
        parser.error(f"--limit is at most {HISTORY_ENTRIES_MAX}")
    args.client = ApiClient(args.url, token=args.token, admin_sub=args.admin_sub)
    try:
        code = args.func(args)
    except CliError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except devauth.InvalidToken as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    return int(code or EXIT_OK)


if __name__ == "__main__":
    sys.exit(main())
