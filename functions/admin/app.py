"""Admin operations on accounts (callers in the Cognito group "admin" only)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tokenledger.config import build_ledger_from_env
from tokenledger.domain.errors import ValidationFailed
from tokenledger.domain.model import ID_CHARS_MAX, EntryType
from tokenledger.http.api import caller, idempotency_scope, json_response, make_resolver, write_response
from tokenledger.http.schemas import (
    ID_PATTERN,
    AdminAmountIn,
    AdminEntryIn,
    EntryOut,
    Identifier,
    Metadata,
    Reason,
    WriteOut,
    ok_response,
    problem_responses,
)
from tokenledger.observability import make_tracer
from tokenledger.service.admin import (
    BALANCES_USERS_MAX,
    BATCH_OPERATIONS_MAX,
    AdminOperations,
    BatchOperation,
    check_batch_size,
)

logger = Logger()
tracer = make_tracer()
app = make_resolver()
ledger = build_ledger_from_env()
admin_ops = AdminOperations(ledger)

UserId = Annotated[str, Path(pattern=ID_PATTERN)]
EntryId = Annotated[str, Path(max_length=64)]
# Room for BALANCES_USERS_MAX ids and their commas; a longer list is refused either way.
USER_IDS_CHARS_MAX = (ID_CHARS_MAX + 1) * BALANCES_USERS_MAX


class BatchOperationIn(AdminAmountIn):
    user_id: Identifier
    related_id: Identifier | None = None
    metadata: Metadata = Field(default_factory=dict)


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operations: list[BatchOperationIn] = Field(
        min_length=1, description=f"At most {BATCH_OPERATIONS_MAX} operations (422 `batch_too_large` above)."
    )
    reason: Reason

    @field_validator("operations", mode="before")
    @classmethod
    def _not_too_many(cls, value: Any) -> Any:
        # Counted before the operations are validated one by one: an oversized batch is refused cheaply.
        if isinstance(value, list):
            check_batch_size(len(value))
        return value


class ReversalIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: Reason


class BatchOut(BaseModel):
    entries: list[EntryOut]
    balances: dict[str, int]


class BalanceRowOut(BaseModel):
    user_id: str
    balance: int
    version: int


class BalancesOut(BaseModel):
    balances: list[BalanceRowOut]
    total: int


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


@app.post(
    "/v1/admin/batches",
    responses={
        **ok_response(201, BatchOut, "Every entry, in operation order, and each user's new balance"),
        **problem_responses(401, 403, 409, 422),
    },
)
def create_batch(body: Annotated[BatchIn, Body()]) -> Response[dict]:
    admin = caller(app)
    scope = idempotency_scope(app, route="POST /v1/admin/batches", caller_id=admin.sub, payload=body.model_dump())
    operations = [
        BatchOperation(
            user_id=op.user_id,
            type=EntryType(op.type),
            amount=op.amount,
            related_id=op.related_id,
            metadata=op.metadata,
        )
        for op in body.operations
    ]
    return write_response(admin_ops.batch(actor=admin.sub, operations=operations, reason=body.reason, scope=scope))


@app.post(
    "/v1/admin/entries/<entry_id>/reversal",
    responses={
        **ok_response(201, WriteOut, "The reversal entry and the new balance"),
        **problem_responses(401, 403, 404, 409, 422),
    },
)
def reverse_entry(entry_id: EntryId, body: Annotated[ReversalIn, Body()]) -> Response[dict]:
    admin = caller(app)
    scope = idempotency_scope(
        app,
        route="POST /v1/admin/entries/{entry_id}/reversal",
        caller_id=admin.sub,
        payload={"entry_id": entry_id, "body": body.model_dump()},
    )
    return write_response(admin_ops.reverse(actor=admin.sub, entry_id=entry_id, reason=body.reason, scope=scope))


@app.get(
    "/v1/admin/balances",
    responses={
        **ok_response(200, BalancesOut, "Balances in the order asked, and their total"),
        **problem_responses(401, 403, 422),
    },
)
def get_balances(
    user_ids: Annotated[str, Query(max_length=USER_IDS_CHARS_MAX, description="Comma-separated, at most 100.")],
) -> Response[dict]:
    caller(app)
    ids = [part.strip() for part in user_ids.split(",")]
    for position, user_id in enumerate(ids):
        if not re.fullmatch(ID_PATTERN, user_id):
            raise ValidationFailed(
                f"user_ids: item {position} is not a user id",
                errors=[{"loc": ["query", "user_ids", position], "type": "string_pattern_mismatch"}],
            )
    return json_response(200, admin_ops.balances(ids))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)
