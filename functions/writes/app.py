"""User writes: commitments of tokens to predictions."""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.http.api import caller, idempotency_scope, if_match_version, make_resolver, write_response
from tokenledger.http.requests import CommitmentIn
from tokenledger.http.shapes import Body, ok_response, problem_responses
from tokenledger.observability import make_tracer

logger = Logger()
tracer = make_tracer()
app = make_resolver()
ledger = bootstrap.build_ledger(bootstrap.Settings.from_env())

COMMITMENTS_ROUTE = "POST /v1/commitments"


@app.post(
    "/v1/commitments",
    responses={
        **ok_response(201, "WriteOut", "The commitment entry and the new balance"),
        **problem_responses(401, 409, 412, 422),
    },
)
def create_commitment(body: Annotated[CommitmentIn, Body()]) -> Response[dict]:
    user = caller(app)
    scope = idempotency_scope(app, route=COMMITMENTS_ROUTE, caller_id=user.sub, payload=body.model_dump())
    result = ledger.commit(
        user_id=user.sub,
        prediction_id=body.prediction_id,
        amount=body.amount,
        metadata=body.metadata,
        scope=scope,
        if_match=if_match_version(app),
    )
    return write_response(result, 201)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
