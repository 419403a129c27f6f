"""Admin operations on accounts (callers in the Cognito group "admin" only)."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from tokenledger.config import build_ledger_from_env
from tokenledger.http.api import caller, idempotency_scope, make_resolver, write_response
from tokenledger.http.schemas import ID_PATTERN, AdminEntryIn, WriteOut, ok_response, problem_responses

logger = Logger()
tracer = Tracer()
app = make_resolver()
ledger = build_ledger_from_env()

UserId = Annotated[str, Path(pattern=ID_PATTERN)]


@app.post(
    "/v1/admin/accounts/<user_id>/entries",
    responses={
        **ok_response(201, WriteOut, "The entry and the new balance"),
        **problem_responses(401, 403, 409, 422),
    },
)
def create_admin_entry(user_id: UserId, body: Annotated[AdminEntryIn, Body()]) -> Response[dict]:
    admin = caller(app)
    scope = idempotency_scope(
        app,
        route="POST /v1/admin/accounts/{user_id}/entries",
        caller_id=admin.sub,
        payload={"user_id": user_id, "body": body.model_dump()},
    )
    result = ledger.admin_entry(
        actor=admin.sub,
        user_id=user_id,
        entry_type=body.type,
        amount=body.amount,
        reason=body.reason,
        related_id=body.related_id,
        metadata=body.metadata,
        scope=scope,
    )
    return write_response(result)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
