"""Admin operations on accounts (callers in the Cognito group "admin" only)."""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

import re
from typing import Annotated, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.domain.errors import ValidationFailed
from tokenledger.domain.model import ID_CHARS_MAX, ID_PATTERN, EntryType
from tokenledger.http.api import caller, idempotency_scope, json_response, make_resolver, write_response
from tokenledger.http.requests import AdminAmountIn, AdminEntryIn, identifier, metadata, reason
from tokenledger.http.shapes import Body, Path, Query, Shape, choice, integer, items, ok_response, problem_responses
from tokenledger.observability import make_tracer
from tokenledger.service.admin import (
    BALANCES_USERS_MAX,
    BATCH_OPERATIONS_MAX,
    BatchOperation,
    check_batch_size,
)
from tokenledger.service.predictions import SETTLEMENT_PAYOUTS_MAX, SettlementRequest

logger = Logger()
tracer = make_tracer()
app = make_resolver()
predictions = bootstrap.build_predictions(bootstrap.Settings.from_env())
admin_ops = predictions.admin
ledger = admin_ops.ledger

UserId = Annotated[str, Path(pattern=ID_PATTERN)]
PredictionId = Annotated[str, Path(pattern=ID_PATTERN)]
EntryId = Annotated[str, Path(max_length=64)]
# Room for BALANCES_USERS_MAX ids and their commas; a longer list is refused either way.
USER_IDS_CHARS_MAX = (ID_CHARS_MAX + 1) * BALANCES_USERS_MAX


class BatchOperationIn(AdminAmountIn):
    user_id: str = identifier()
    related_id: str | None = identifier(default=None)
    metadata: dict[str, str] = metadata()


def _batch_size(operations: Any) -> None:
    # Counted before the operations are validated one by one: an oversized batch is refused cheaply.
    if isinstance(operations, list):
        check_batch_size(len(operations))


class BatchIn(Shape):
    operations: list[BatchOperationIn] = items(
        BatchOperationIn,
        min_length=1,
        before=_batch_size,
        description=f"At most {BATCH_OPERATIONS_MAX} operations (422 `batch_too_large` above).",
    )
    reason: str = reason()


class ReversalIn(Shape):
    reason: str = reason()


@app.post(
    "/v1/admin/accounts/<user_id>/entries",
    responses={
        **ok_response(201, "WriteOut", "The entry and the new balance"),
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
    return write_response(result, 201)


@app.post(
    "/v1/admin/batches",
    responses={
        **ok_response(201, "BatchOut", "Every entry, in operation order, and each user's new balance"),
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
    result = admin_ops.batch(actor=admin.sub, operations=operations, reason=body.reason, scope=scope)
    return write_response(result, 201)


@app.post(
    "/v1/admin/entries/<entry_id>/reversal",
    responses={
        **ok_response(201, "WriteOut", "The reversal entry and the new balance"),
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
    result = admin_ops.reverse(actor=admin.sub, entry_id=entry_id, reason=body.reason, scope=scope)
    return write_response(result, 201)


@app.get(
    "/v1/admin/balances",
    responses={
        **ok_response(200, "BalancesOut", "Balances in the order asked, and their total"),
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


class PayoutIn(Shape):
    user_id: str = identifier()
    amount: int = integer(description="Tokens, 1..1,000,000,000.")


def _payouts_count(payouts: Any) -> None:
    # Counted before the payouts are validated one by one: an oversized plan is refused cheaply.
    if isinstance(payouts, list) and len(payouts) > SETTLEMENT_PAYOUTS_MAX:
        raise ValidationFailed(
            f"at most {SETTLEMENT_PAYOUTS_MAX} payouts per settlement, not {len(payouts)}",
            errors=[{"loc": ["body", "payouts"], "type": "too_long"}],
        )


class SettlementIn(Shape):
    reason: str = reason()
    outcome: str = choice("resolved", "cancelled")
    payouts: list[PayoutIn] | None = items(
        PayoutIn,
        before=_payouts_count,
        default=None,
        description=f"resolved only: one payout per user, at most {SETTLEMENT_PAYOUTS_MAX}.",
    )
    house_contribution: int | None = integer(
        ge=0, le=1_000_000_000, default=None, description="Tokens the house adds to the pool (resolved only)."
    )


@app.post(
    "/v1/admin/predictions/<prediction_id>/close",
    responses={
        **ok_response(200, "ClosedOut", "Closed (closing again answers the first closed_at)"),
        **problem_responses(401, 403, 422),
    },
)
def close_prediction(prediction_id: PredictionId) -> Response[dict]:
    admin = caller(app)
    return json_response(200, predictions.close(prediction_id, actor=admin.sub))


@app.post(
    "/v1/admin/predictions/<prediction_id>/settlement",
    responses={
        **ok_response(202, "SettlementOut", "Accepted: the payouts or refunds run in the background"),
        **problem_responses(401, 403, 409, 422),
    },
)
def create_settlement(prediction_id: PredictionId, body: Annotated[SettlementIn, Body()]) -> Response[dict]:
    admin = caller(app)
    scope = idempotency_scope(
        app,
        route="POST /v1/admin/predictions/{prediction_id}/settlement",
        caller_id=admin.sub,
        payload={"prediction_id": prediction_id, "body": body.model_dump()},
    )
    request = SettlementRequest(
        outcome=body.outcome,
        reason=body.reason,
        payouts=[(p.user_id, p.amount) for p in body.payouts or []],
        house_contribution=body.house_contribution or 0,
    )
    return write_response(predictions.settle(prediction_id, request, actor=admin.sub, scope=scope), 202)


@app.get(
    "/v1/admin/predictions/<prediction_id>/settlement",
    responses={
        **ok_response(200, "SettlementOut", "The settlement and its progress"),
        **problem_responses(401, 403, 404, 422),
    },
)
def get_settlement(prediction_id: PredictionId) -> Response[dict]:
    caller(app)
    return json_response(200, predictions.settlement(prediction_id))


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
