"""What the OpenAPI document says beyond what Powertools derives from a handler's signature.

Powertools documents a route's path, query and body parameters; the headers our handlers read
themselves (``Idempotency-Key``, ``If-Match``, ``Stripe-Signature``), examples and the
descriptions Swagger UI's "Try it out" needs are added here, for every route of every
function, including routes added later:

- A header is declared on an operation when its handler reads it: it calls the function that
  reads that header (``idempotency_scope``, ``if_match_version``) or names the header as a
  literal (``header(app, "Stripe-Signature")``). ``HEADERS`` describes each one.
- Every request body, response, path and query parameter without an example gets one, built
  from its JSON schema (``example_of``): realistic values for the fields this API uses
  (``FIELD_EXAMPLES``), within each schema's bounds.
- Every operation gets a description: the handler's docstring (Powertools' own), else
  ``ROUTE_DESCRIPTIONS``, followed by who may call it and what its headers mean.

``describe(app, part)`` is called on each function's part of the document
(``infra/openapi.py``), so the committed ``docs/openapi.json`` and the local ``/openapi.json``
say the same.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from typing import Any

from tokenledger.service.idempotency import IDEMPOTENCY_KEY_CHARS_MAX

ADMIN_PATH_PREFIX = "/v1/admin/"
PUBLIC_PATH_PREFIXES = ("/v1/webhooks/",)
PROBLEM_TYPE_BASE = "https://tokenledger.dev/problems/"
EXAMPLE_DEPTH_MAX = 8

HEADERS: dict[str, dict[str, Any]] = {
    "Idempotency-Key": {
        "name": "Idempotency-Key",
        "in": "header",
        "required": True,
        "description": (
            f"1-{IDEMPOTENCY_KEY_CHARS_MAX} printable ASCII characters, unique per request you mean "
            "(a UUID is a good choice). The same key with the same body replays the first answer with "
            "`Idempotent-Replayed: true` and moves nothing; with a different body it is 422 "
            "`idempotency_key_reused`. Scoped to the caller and the route; kept at least 7 days."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": IDEMPOTENCY_KEY_CHARS_MAX},
        "example": "try-it-0001",
    },
    "If-Match": {
        "name": "If-Match",
        "in": "header",
        "required": False,
        "description": (
            'The account version you last read (`"<version>"`, from `GET /v1/balance`); the write '
            "happens only if the account is still at that version, else 412 `version_conflict`. "
            "Leave it out to write at any version."
        ),
        "schema": {"type": "string"},
    },
    "Stripe-Signature": {
        "name": "Stripe-Signature",
        "in": "header",
        "required": True,
        "description": (
            'Set by Stripe: `t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` with the endpoint\'s '
            "signing secret. A bad signature, or one older than 300 s, is 400 `invalid_signature`. "
            "Locally, `tokenledger stripe-purchase` signs events with the development secret."
        ),
        "schema": {"type": "string"},
        "example": "t=1764547200,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd",
    },
}

# A handler calling one of these reads that header.
HEADER_READERS: dict[str, str] = {"idempotency_scope": "Idempotency-Key", "if_match_version": "If-Match"}

ROUTE_DESCRIPTIONS: dict[str, str] = {
    "GET /v1/packages": "The token package catalog: what a user can buy, with prices in the currency's minor unit.",
    "GET /v1/balance": (
        "The caller's balance and account version (0 and 0 for a user who never had an entry). "
        "`required=N` adds whether the balance covers N tokens and the shortfall. `at=T` (RFC 3339) answers "
        "`{user_id, balance, version, at}`: the balance after the last entry created at or before T."
    ),
    "GET /v1/transactions": (
        "The caller's entries, newest first. Follow `next_cursor` (opaque, bound to the caller) for the next page."
    ),
    "GET /v1/transactions/{entry_id}": "One of the caller's entries; another user's entry is 404.",
    "POST /v1/commitments": (
        "Commits the caller's tokens to a prediction: one `commitment` entry of `-amount`. "
        "Too few tokens is 409 `insufficient_balance` with `balance` and `shortfall`."
    ),
    "POST /v1/admin/accounts/{user_id}/entries": (
        "Writes one admin entry for a user: `grant`, `payout` and `refund` credit `amount` (> 0), "
        "`adjustment` moves a signed amount. The reason and the admin are recorded on the entry."
    ),
    "POST /v1/admin/batches": (
        "Writes up to the documented number of operations in one transaction: all or nothing. "
        "A failing operation is 409 naming its index."
    ),
    "POST /v1/admin/entries/{entry_id}/reversal": (
        "Compensates an entry with a `reversal` entry of the opposite amount. A second reversal is 409 "
        "`already_reversed`."
    ),
    "GET /v1/admin/balances": "Balances of up to 100 users (`user_ids=a,b`), in the order asked, and their total.",
    "GET /v1/admin/accounts/{user_id}/audit": (
        "Checks one account: the entry chain (seq, balance_after, hashes) and the stored balance against the entries."
    ),
    "POST /v1/admin/accounts/{user_id}/repair": (
        "Rebuilds the stored balance from the entries (never edits an entry) and records who did it."
    ),
    "GET /v1/admin/reports/latest": "The latest reconciliation report; 404 before the first run.",
    "GET /v1/statements": (
        "The caller's entries with `from <= created_at < to` (RFC 3339), oldest first, with the opening and "
        "closing balances, totals by type and the hashes that chain them (`opening_hash`, `head_hash`): "
        "`tokenledger verify` checks the file offline. `Accept: text/csv` answers CSV, a header row and one "
        "row per entry. More than 1,000 entries, or more than 366 days, is 422 `statement_too_large`."
    ),
    "GET /v1/admin/accounts/{user_id}/statement": "Any user's statement, as `GET /v1/statements` (JSON or CSV).",
    "POST /v1/webhooks/stripe": (
        "Stripe's webhook: `checkout.session.completed` (paid) and `checkout.session.async_payment_succeeded` "
        "credit one purchase per payment; `charge.refunded` and `charge.dispute.created` claw tokens back. "
        "Other event types are answered 200 and ignored."
    ),
}

# Answers whose schema says too little to build an example from.
RESPONSE_EXAMPLES: dict[str, dict[str, Any]] = {"POST /v1/webhooks/stripe": {"200": {"received": True}}}

# Realistic values for the fields of this API, by property or parameter name (redirects: on the
# template's default CheckoutAllowedOrigins, so "Try it out" works against make run).
FIELD_EXAMPLES: dict[str, Any] = {
    "user_id": "alice",
    "user_ids": "alice,bob",
    "prediction_id": "p-worldcup-final",
    "entry_id": "01JDQ4M3Z8K2T9V5X7W1N6B0C4",
    "reverses": None,
    "package_id": "starter",
    "name": "Starter pack",
    "currency": "usd",
    "reason": "support ticket 42",
    "actor": "ops",
    "counterparty": "prediction:p-worldcup-final",
    "related_id": "p-worldcup-final",
    "created_at": "2026-11-24T12:00:00.123Z",
    "from": "2026-11-01T00:00:00Z",
    "to": "2026-12-01T00:00:00Z",
    "opening_hash": "0000000000000000000000000000000000000000000000000000000000000000",
    "updated_at": "2026-11-24T12:00:00.123Z",
    "started_at": "2026-11-24T03:15:00.000Z",
    "finished_at": "2026-11-24T03:15:42.000Z",
    "closed_at": "2026-11-24T12:00:00.123Z",
    "at": "2026-11-24T12:00:00Z",
    "hash": "9f2c4e1ab7d3c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b",
    "head_hash": "9f2c4e1ab7d3c6e8f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b",
    "next_cursor": None,
    "cursor": None,
    "run_id": "20261124T031500Z-3f2a",
    "snapshot_key": "reports/2026/11/24/20261124T031500Z-3f2a.snapshot.json",
    "checkout_session_id": "cs_test_a1b2c3",
    "url": "https://checkout.stripe.com/c/pay/cs_test_a1b2c3",
    # On the template's default allowed origins, so "Try it out" under `make run` is accepted.
    "success_url": "http://localhost:3000/checkout/complete?session_id={CHECKOUT_SESSION_ID}",
    "cancel_url": "http://localhost:3000/checkout/cancelled",
    "kind": "balance_mismatch",
    "inconsistencies": [],
    "detail": "stored balance 80 differs from the entries' 75",
    "amount": 25,
    "tokens": 100,
    "balance": 75,
    "stored_balance": 75,
    "computed_balance": 75,
    "balance_after": 75,
    "version": 3,
    "seq": 3,
    "required": 25,
    "limit": 20,
    "total": 125,
    "before": 80,
    "after": 75,
    "shortfall": 0,
    "entries_checked": 3,
    "accounts_checked": 2,
    "tokens_outstanding": 125,
    "unrecovered_chargebacks": 0,
    "sufficient": True,
    "consistent": True,
    "healthy": True,
    "repaired": False,
    "received": True,
}

# One problem per status, for the responses' examples (a route's own codes are in its description).
STATUS_PROBLEMS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_signature", "Invalid signature", "the Stripe-Signature header does not match the payload"),
    401: ("unauthorized", "Unauthorized", "a bearer token is required (Authorization: Bearer <token>)"),
    403: ("forbidden", "Forbidden", "this route is for the admin group"),
    404: ("not_found", "Not found", "no entry 01JDQ4M3Z8K2T9V5X7W1N6B0C4"),
    409: ("insufficient_balance", "Insufficient balance", "balance 10 is short of 15 for commitment of 25"),
    412: ("version_conflict", "Version conflict", 'the account is at version 4, not "3"'),
    415: ("unsupported_media_type", "Unsupported media type", "send the body as application/json"),
    422: ("validation_error", "Validation error", "body.amount: Input should be greater than or equal to 1"),
    502: ("payment_provider_unavailable", "Payment provider unavailable", "Stripe did not answer; retry"),
}

STRIPE_EVENT_SCHEMA: dict[str, Any] = {
    "title": "StripeEvent",
    "description": (
        "A Stripe event as Stripe posts it (https://docs.stripe.com/api/events/object); "
        "only `type` and `data.object` decide what happens. The raw body is what the signature covers."
    ),
    "type": "object",
    "required": ["id", "type", "data"],
    "properties": {
        "id": {"type": "string"},
        "object": {"type": "string", "const": "event"},
        "type": {"type": "string"},
        "created": {"type": "integer"},
        "livemode": {"type": "boolean"},
        "data": {
            "type": "object",
            "required": ["object"],
            "properties": {"object": {"type": "object", "additionalProperties": True}},
        },
    },
    "additionalProperties": True,
}
STRIPE_EVENT_EXAMPLE: dict[str, Any] = {
    "id": "evt_1QfR2a",
    "object": "event",
    "api_version": "2024-06-20",
    "created": 1764547200,
    "livemode": False,
    "type": "checkout.session.completed",
    "data": {
        "object": {
            "id": "cs_test_a1b2c3",
            "object": "checkout.session",
            "mode": "payment",
            "status": "complete",
            "payment_status": "paid",
            "amount_subtotal": 499,
            "amount_total": 499,
            "currency": "usd",
            "client_reference_id": "alice",
            "payment_intent": "pi_3QfR2a",
            "metadata": {"user_id": "alice", "package_id": "starter"},
        }
    },
}


# ---------------------------------------------------------------- the handlers' headers
def headers_read_by(func: Callable[..., Any]) -> list[str]:
    """The headers of ``HEADERS`` a handler reads, in ``HEADERS`` order."""
    code = inspect.unwrap(func).__code__
    names = set(code.co_names)
    literals = {c for c in code.co_consts if isinstance(c, str)}
    read = {header for reader, header in HEADER_READERS.items() if reader in names} | (literals & set(HEADERS))
    return [header for header in HEADERS if header in read]


# ---------------------------------------------------------------- examples
# One return per JSON Schema keyword, in precedence order: the order is the rule, a table would hide it.
def example_of(schema: dict[str, Any], schemas: dict[str, Any], name: str | None = None, depth: int = 0) -> Any:  # noqa: PLR0911, PLR0912
    """A value valid for ``schema`` (refs resolved in ``schemas``), realistic where ``name`` is known."""
    if depth > EXAMPLE_DEPTH_MAX:
        return None
    if "$ref" in schema:
        return example_of(schemas.get(schema["$ref"].rsplit("/", 1)[-1], {}), schemas, name, depth + 1)
    for key in ("example", "const"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    if isinstance(FIELD_EXAMPLES.get(name or ""), list):
        return FIELD_EXAMPLES[name or ""]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            if name in FIELD_EXAMPLES and FIELD_EXAMPLES[name] is None:
                return None
            return example_of(options[0], schemas, name, depth + 1)
    if schema.get("allOf"):
        return example_of(schema["allOf"][0], schemas, name, depth + 1)
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return _object_example(schema, schemas, depth)
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_of(schema.get("items", {}), schemas, _singular(name), depth + 1) for _ in range(count)]
    if kind in {"integer", "number"}:
        return _number_example(schema, name)
    if kind == "boolean":
        value = FIELD_EXAMPLES.get(name or "")
        return value if isinstance(value, bool) else True
    if kind == "string" or kind is None:
        value = FIELD_EXAMPLES.get(name or "")
        if isinstance(value, str):
            return value
        if schema.get("format") == "date-time":
            return FIELD_EXAMPLES["created_at"]
        return "example-1"
    return None


def _singular(name: str | None) -> str | None:
    return name[:-1] if name and name.endswith("s") else name


def _object_example(schema: dict[str, Any], schemas: dict[str, Any], depth: int) -> dict[str, Any]:
    properties: dict[str, Any] = schema.get("properties", {})
    if properties:
        return {key: example_of(sub, schemas, key, depth + 1) for key, sub in properties.items()}
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict) and extra:
        value = example_of(extra, schemas, None, depth + 1)
        if isinstance(value, int) and not isinstance(value, bool):
            return {"alice": 75, "bob": 50}
        if isinstance(value, str):
            return {"channel": "web"}
        return {"example": value}
    return {}


def _number_example(schema: dict[str, Any], name: str | None) -> int:
    value = FIELD_EXAMPLES.get(name or "")
    wanted = value if isinstance(value, int) and not isinstance(value, bool) else 1
    low = schema.get("minimum")
    high = schema.get("maximum")
    if low is not None:
        wanted = max(wanted, int(low))
    if high is not None:
        wanted = min(wanted, int(high))
    return wanted


def problem_example(status: int) -> dict[str, Any]:
    code, title, detail = STATUS_PROBLEMS.get(status, ("error", "Error", "the request could not be completed"))
    example: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if code == "insufficient_balance":
        example |= {"balance": 10, "shortfall": 15}
    if code == "validation_error":
        example["errors"] = [{"loc": ["body", "amount"], "type": "greater_than_equal", "msg": "Input should be >= 1"}]
    return example


# ---------------------------------------------------------------- the operations
def describe(app: Any, part: dict[str, Any]) -> None:
    """Add headers, examples and descriptions to one function's part of the document, in place."""
    schemas: dict[str, Any] = part.setdefault("components", {}).setdefault("schemas", {})
    routes = list(getattr(app, "_static_routes", [])) + list(getattr(app, "_dynamic_routes", []))
    for route in routes:
        methods = route.method if isinstance(route.method, list | tuple) else [route.method]
        for method in methods:
            operation = part.get("paths", {}).get(route.openapi_path, {}).get(str(method).lower())
            if operation is not None:
                describe_operation(str(method).upper(), route.openapi_path, operation, headers_read_by(route.func))
    for operations in part.get("paths", {}).values():
        for operation in operations.values():
            if isinstance(operation, dict):
                add_examples(operation, schemas)


def describe_operation(method: str, path: str, operation: dict[str, Any], headers: list[str]) -> None:
    parameters: list[dict[str, Any]] = operation.setdefault("parameters", [])
    declared = {(p.get("in"), str(p.get("name", "")).lower()) for p in parameters}
    for name in headers:
        if ("header", name.lower()) not in declared:
            parameters.append(copy.deepcopy(HEADERS[name]))
    if not parameters:
        del operation["parameters"]
    if path.startswith(PUBLIC_PATH_PREFIXES) and "Stripe-Signature" in headers and "requestBody" not in operation:
        operation["requestBody"] = {
            "required": True,
            "description": "The event exactly as Stripe sends it (the signature covers these bytes).",
            "content": {"application/json": {"schema": STRIPE_EVENT_SCHEMA, "example": STRIPE_EVENT_EXAMPLE}},
        }
    operation["description"] = _description(method, path, operation, headers)
    for status, example in RESPONSE_EXAMPLES.get(f"{method} {path}", {}).items():
        for media in operation.get("responses", {}).get(status, {}).get("content", {}).values():
            media.setdefault("example", example)


def _description(method: str, path: str, operation: dict[str, Any], headers: list[str]) -> str:
    own = str(operation.get("description") or "").strip() or ROUTE_DESCRIPTIONS.get(f"{method} {path}", "")
    if path.startswith(PUBLIC_PATH_PREFIXES):
        who = "Called by Stripe: no bearer token; the `Stripe-Signature` header authenticates the body."
    elif path.startswith(ADMIN_PATH_PREFIX):
        who = (
            "Admin only: a token whose `cognito:groups` holds `admin`, or a machine token with the "
            "`tokenledger/admin` scope (locally: `tokenledger token ops --admin`). Others get 403."
        )
    else:
        who = "As the caller of the bearer token (locally: `tokenledger token <user>`); no other user's data."
    notes = [who]
    if "Idempotency-Key" in headers:
        notes.append("Requires `Idempotency-Key`: retry with the same key and nothing moves twice.")
    if "If-Match" in headers:
        notes.append('Optional `If-Match: "<version>"` for an optimistic check (412 on mismatch).')
    return "\n\n".join(part for part in (own, " ".join(notes)) if part)


def add_examples(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        # Only required ones: Swagger UI's "Try it out" sends an optional parameter's example too.
        if parameter.get("required") and "example" not in parameter and "examples" not in parameter:
            value = example_of(parameter.get("schema", {}), schemas, parameter.get("name"))
            if value is not None:
                parameter["example"] = value
    body = operation.get("requestBody", {})
    for media in body.get("content", {}).values():
        if "example" not in media and "examples" not in media:
            media["example"] = example_of(media.get("schema", {}), schemas)
    for status, response in operation.get("responses", {}).items():
        for media_type, media in response.get("content", {}).items():
            if "example" in media or "examples" in media or not media.get("schema"):
                continue
            if "problem" in media_type and str(status).isdigit():
                media["example"] = problem_example(int(status))
            else:
                media["example"] = example_of(media.get("schema", {}), schemas)
