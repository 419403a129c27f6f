"""What every HTTP function shares: the resolver, identity, idempotency, problem+json.

Domain errors are raised as typed exceptions and mapped to RFC 9457 problem details in
one place. Identity is checked before request validation reports anything, so a caller
without claims always gets 401 and a non-admin on an admin route 403.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from tokenledger.domain.errors import (
    Forbidden,
    LedgerError,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
    ValidationFailed,
)
from tokenledger.http.shapes import Refused, RoutePlan
from tokenledger.service.idempotency import IdempotencyScope, check_idempotency_key, request_hash
from tokenledger.service.ledger import WriteResult

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tokenledger.dev/problems/"
ADMIN_GROUP = "admin"
ADMIN_PATH_PREFIX = "/v1/admin/"
PUBLIC_PATH_PREFIXES = ("/v1/webhooks/",)
VERSION_CHARS_MAX = 20
# A JSON number in a request body longer than this is refused before it becomes an int or a
# float (Python refuses ints over 4,300 digits with a ValueError; amounts need 10).
JSON_NUMBER_CHARS_MAX = 64

logger = Logger(child=True)


ADMIN_SCOPE = "tokenledger/admin"  # machine clients (client credentials): the template's resource server
GROUPS_CHARS_MAX = 4096  # a claim longer than any real list of group names is no groups at all


@dataclass(frozen=True, slots=True)
class Caller:
    sub: str
    groups: frozenset[str]
    scopes: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN_GROUP in self.groups or ADMIN_SCOPE in self.scopes


def parse_groups(raw: Any) -> frozenset[str]:
    """`cognito:groups` in exactly two forms: HTTP API's "[admin support]" or a JSON list.

    The list may arrive parsed (a list of strings) or as its JSON text. The bracket form is
    split on spaces only: a group named `ops,admin` is that group, never `admin`. Anything
    else (a bare string, commas, quotes outside JSON) is no groups.
    """
    if isinstance(raw, list):
        return frozenset(g for g in raw if isinstance(g, str) and g)
    if not isinstance(raw, str) or len(raw) > GROUPS_CHARS_MAX:
        return frozenset()
    text = raw.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return frozenset()
    if '"' in text:
        try:
            parsed = json.loads(text)
        except (ValueError, RecursionError):
            return frozenset()
        return parse_groups(parsed) if isinstance(parsed, list) else frozenset()
    return frozenset(text[1:-1].split())


def parse_scopes(raw: Any) -> frozenset[str]:
    """An access token's `scope` claim: scopes separated by spaces (RFC 6749), each compared whole."""
    if not isinstance(raw, str) or len(raw) > GROUPS_CHARS_MAX:
        return frozenset()
    return frozenset(raw.split())


def claims_of(event: dict[str, Any]) -> dict[str, Any] | None:
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    claims = (authorizer.get("jwt") or {}).get("claims")
    return claims if isinstance(claims, dict) else None


def caller_of(event: dict[str, Any], path: str) -> Caller:
    """The authenticated caller; raises 401 without claims and 403 for non-admins on admin routes."""
    claims = claims_of(event)
    sub = claims.get("sub") if claims else None
    if not isinstance(sub, str) or not sub:
        raise Unauthorized("a valid bearer token is required")
    caller = Caller(
        sub=sub,
        groups=parse_groups(claims.get("cognito:groups") if claims else None),
        scopes=parse_scopes(claims.get("scope") if claims else None),
    )
    if path.startswith(ADMIN_PATH_PREFIX) and not caller.is_admin:
        raise Forbidden(f"this route is for the admin group or the {ADMIN_SCOPE} scope")
    return caller


def caller(app: APIGatewayHttpResolver) -> Caller:
    return caller_of(app.current_event.raw_event, app.current_event.path)


# The HTTP status of each problem code: chosen here, by the HTTP layer, never by a use case.
PROBLEM_STATUS: dict[str, int] = {
    "ledger_error": 400,
    "validation_error": 422,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "insufficient_balance": 409,
    "already_reversed": 409,
    "version_conflict": 412,
    "idempotency_key_reused": 422,
    "batch_too_large": 422,
    "invalid_signature": 400,
    "unsupported_media_type": 415,
    "contention": 409,
    "unknown_package": 422,
    "redirect_not_allowed": 422,
    "payment_provider_unavailable": 502,
    "nothing_to_reverse": 409,
    "already_clawed_back": 409,
    "prediction_closed": 409,
    "pool_exceeded": 409,
    "already_settled": 409,
    "stripe_event_conflict": 409,  # the same event id with other content: the first record stands
    "purchase_not_recorded": 409,  # a refund before its purchase: non-2xx, so Stripe retries later
    "statement_too_large": 422,
    "chain_inconsistent": 409,
}


def problem_status(error: LedgerError) -> int:
    """The status a refusal is answered with (a test holds every error code in the table)."""
    return PROBLEM_STATUS[error.code]


def problem(error: LedgerError) -> Response:
    status = problem_status(error)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + error.code,
        "title": error.title,
        "status": status,
        "detail": error.detail,
        "code": error.code,
    }
    body.update({k: v for k, v in error.extra.items() if v is not None})
    return Response(status_code=status, content_type=PROBLEM_JSON, body=json.dumps(body))


def _authenticate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    if not app.current_event.path.startswith(PUBLIC_PATH_PREFIXES):
        caller(app)
    return next_middleware(app)


def _identity_problem(app: APIGatewayHttpResolver) -> Response | None:
    """401/403 take precedence over anything wrong with the request itself."""
    if app.current_event.path.startswith(PUBLIC_PATH_PREFIXES):
        return None
    try:
        caller(app)
    except LedgerError as refused:
        return problem(refused)
    return None


def _bounded_number(parse: Any) -> Any:
    def number(text: str) -> Any:
        if len(text) > JSON_NUMBER_CHARS_MAX:
            raise ValidationFailed(
                f"a number in the body is longer than {JSON_NUMBER_CHARS_MAX} characters",
                errors=[{"loc": ["body"], "type": "json_invalid"}],
            )
        return parse(text)

    return number


_parse_int = _bounded_number(int)
_parse_float = _bounded_number(float)


def json_body(text: str) -> Any:
    """A request body as JSON: 422 for nesting Python cannot follow or numbers of absurd length."""
    try:
        return json.loads(text, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        raise ValidationFailed("the body nests too deep", errors=[{"loc": ["body"], "type": "json_invalid"}]) from None


class LedgerResolver(APIGatewayHttpResolver):
    """Powertools' HTTP API resolver that answers 401/403 before anything reads the body."""

    def resolve(self, event: Mapping[str, Any], context: Any) -> dict[str, Any]:
        if isinstance(event, dict) and isinstance(event.get("rawPath"), str):
            path = APIGatewayProxyEventV2(event).path
            if not path.startswith(PUBLIC_PATH_PREFIXES):
                try:
                    caller_of(event, path)
                except LedgerError as refused:
                    return _problem_event(refused)
        return super().resolve(event, context)


def _problem_event(error: LedgerError) -> dict[str, Any]:
    """A problem as the HTTP API integration response, built without the resolver."""
    response = problem(error)
    return {
        "statusCode": response.status_code,
        "headers": {"Content-Type": PROBLEM_JSON},
        "body": response.body,
        "isBase64Encoded": False,
    }


# A route's plan is kept on its handler function, not in a module-level registry: a process that
# loads a handler module many times (the local stack, the tests: one copy per environment) would
# otherwise keep every copy, its clients and its services alive through the registry.
_PLAN_ATTRIBUTE = "_tokenledger_route_plan"


def _plan_of(func: Callable[..., Any]) -> RoutePlan:
    plan = getattr(func, _PLAN_ATTRIBUTE, None)
    if plan is None:
        plan = RoutePlan(func)
        setattr(func, _PLAN_ATTRIBUTE, plan)
    return plan


def _validate(app: APIGatewayHttpResolver, next_middleware: NextMiddleware) -> Response:
    """The route's arguments from the request, in two tiers (`tokenledger.http.shapes`): the
    strict check, else Powertools' OpenAPI validation with pydantic (the same answers as ever)."""
    route = app.context["_route"]
    plan = _plan_of(route.func)
    try:
        app.context["_route_args"] = plan.accept(app.context.get("_route_args") or {}, app.current_event)
    except Refused:
        return _powertools_validation(app, route, next_middleware)
    return next_middleware(app)


def _powertools_validation(app: APIGatewayHttpResolver, route: Any, next_middleware: NextMiddleware) -> Response:
    from aws_lambda_powertools.event_handler.middlewares.openapi_validation import OpenAPIRequestValidationMiddleware

    from tokenledger.http.schemas import realize

    realize(route.func)
    return OpenAPIRequestValidationMiddleware().handler(app, next_middleware)


def make_resolver() -> APIGatewayHttpResolver:
    """The resolver every HTTP function uses, with identity, validation and error mapping installed."""
    app = LedgerResolver(json_body_deserializer=json_body)
    app.use(middlewares=[_authenticate, _validate])

    @app.exception_handler(LedgerError)
    def _ledger_error(error: LedgerError) -> Response:
        # Also raised while the body is parsed (e.g. batch_too_large), before the identity check.
        return _identity_problem(app) or problem(error)

    @app.exception_handler(RequestValidationError)
    def _validation_error(error: RequestValidationError) -> Response:
        refused = _identity_problem(app)
        if refused is not None:
            return refused
        errors = [{"loc": list(e.get("loc", ())), "type": e.get("type"), "msg": e.get("msg")} for e in error.errors()]
        first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return problem(ValidationFailed(f"{where}: {first['msg']}" if where else str(first["msg"]), errors=errors))

    @app.exception_handler(RequestUnsupportedContentType)
    def _unsupported_media(_: RequestUnsupportedContentType) -> Response:
        refused = _identity_problem(app)
        return refused or problem(UnsupportedMediaType("send the body as application/json"))

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        return problem(NotFound(f"no route for {app.current_event.http_method} {app.current_event.path}"))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error", extra={"error_type": type(error).__name__})
        body = {
            "type": PROBLEM_TYPE_BASE + "internal_error",
            "title": HTTPStatus.INTERNAL_SERVER_ERROR.phrase,
            "status": 500,
            "detail": "the request could not be completed; retry with the same Idempotency-Key",
            "code": "internal_error",
        }
        return Response(status_code=500, content_type=PROBLEM_JSON, body=json.dumps(body))

    @app.exception_handler(RecursionError)
    def _too_deep(_: RecursionError) -> Response:
        # json.loads gives up on a body nested ~1,000 deep (e.g. "[[[[...") before any route code runs.
        invalid = ValidationFailed("the body nests too deep", errors=[{"loc": ["body"], "type": "json_invalid"}])
        return _identity_problem(app) or problem(invalid)

    @app.exception_handler(ValueError)
    def _unparsable_body(error: ValueError) -> Response:
        # Powertools parses the body before any route code runs and lets two ValueErrors out:
        # multipart/form-data without a boundary, and a body that is not UTF-8. Bad input, never a 5xx.
        if (header(app, "Content-Type") or "").strip().lower().startswith("multipart/"):
            return _identity_problem(app) or problem(UnsupportedMediaType("send the body as application/json"))
        if isinstance(error, UnicodeDecodeError):
            invalid = ValidationFailed("the body is not UTF-8 JSON", errors=[{"loc": ["body"], "type": "json_invalid"}])
            return _identity_problem(app) or problem(invalid)
        if _unreadable_json(app):  # e.g. an integer of more than 4,300 digits (Python's int-conversion limit)
            invalid = ValidationFailed(
                "the body is JSON this API cannot read", errors=[{"loc": ["body"], "type": "json_invalid"}]
            )
            return _identity_problem(app) or problem(invalid)
        return _unexpected(error)

    return app


def _unreadable_json(app: APIGatewayHttpResolver) -> bool:
    """Whether the body itself fails to parse (bad input), as opposed to a ValueError raised by route code (a bug)."""
    try:
        json.loads(app.current_event.decoded_body or "null")
    except (ValueError, RecursionError):
        return True
    return False


def header(app: APIGatewayHttpResolver, name: str) -> str | None:
    headers = app.current_event.headers or {}
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return str(value)
    return None


def idempotency_scope(app: APIGatewayHttpResolver, *, route: str, caller_id: str, payload: Any) -> IdempotencyScope:
    """The scope of this request's `Idempotency-Key` (required, 1-255 printable ASCII)."""
    key = check_idempotency_key(header(app, "Idempotency-Key"))
    return IdempotencyScope(caller=caller_id, route=route, key=key, request_hash=request_hash(payload))


def if_match_version(app: APIGatewayHttpResolver) -> int | None:
    """`If-Match: "<version>"` (quotes optional, weak prefix tolerated) as an int, or None."""
    raw = header(app, "If-Match")
    if raw is None:
        return None
    text = raw.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit() or len(text) > VERSION_CHARS_MAX:
        raise ValidationFailed(
            'If-Match must be a quoted account version, e.g. "7"',
            errors=[{"loc": ["header", "If-Match"], "type": "invalid"}],
        )
    return int(text)


def json_response(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> Response[dict]:
    return Response(status_code=status, content_type="application/json", body=body, headers=headers or {})


def write_response(result: WriteResult, status: int) -> Response[dict]:
    """A write's answer with the status its route answers with, first time and on every replay.

    Only successful answers are stored, and each route succeeds with one status, so a replay's
    status is the original's; `Idempotent-Replayed: true` tells it apart.
    """
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return json_response(status, result.body, headers)


CSV_MEDIA_TYPE = "text/csv"


def wants_csv(app: APIGatewayHttpResolver) -> bool:
    """`Accept: text/csv` (alone or preferred to JSON by order; `*/*` and absent mean JSON)."""
    headers = app.current_event.headers or {}
    accept = next((v for k, v in headers.items() if k.lower() == "accept"), "") or ""
    for part in accept.split(",")[:20]:
        media = part.split(";", 1)[0].strip().lower()
        if media == CSV_MEDIA_TYPE:
            return True
        if media in ("application/json", "application/*"):
            return False
    return False


def statement_response(app: APIGatewayHttpResolver, body: dict[str, Any]) -> Response[Any]:
    """A statement as JSON, or as CSV (a header row, one row per entry) when the caller asks for it."""
    if wants_csv(app):
        from tokenledger.service.statements import statement_csv

        filename = f"statement-{body['from'][:10]}-{body['to'][:10]}.csv"
        return Response(
            status_code=200,
            content_type="text/csv; charset=utf-8",
            body=statement_csv(body),
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return json_response(200, body)
