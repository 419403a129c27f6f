"""Checkout Sessions: the caller buys a token package through Stripe Checkout.

The browser never holds the secret key: it asks this route for a session and is sent to
Stripe's page (or, under `make run`, the local checkout page). Tokens are credited later by
the webhook, from the catalog, once the payment succeeds.
"""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.http.api import caller, idempotency_scope, make_resolver, write_response
from tokenledger.http.requests import CheckoutSessionIn
from tokenledger.http.shapes import Body, ok_response, problem_responses
from tokenledger.observability import make_tracer
from tokenledger.service.checkout import CHECKOUT_ROUTE

logger = Logger()
tracer = make_tracer()
app = make_resolver()
checkout = bootstrap.build_checkout(bootstrap.Settings.from_env())


@app.post(
    "/v1/checkout-sessions",
    responses={
        **ok_response(201, "CheckoutSessionOut", "The Checkout Session to send the buyer to"),
        **problem_responses(401, 409, 422, 502),
    },
)
def create_checkout_session(body: Annotated[CheckoutSessionIn, Body()]) -> Response[dict]:
    """Create (or, for the same Idempotency-Key, answer again) a Stripe Checkout Session for one package."""
    user = caller(app)
    scope = idempotency_scope(app, route=CHECKOUT_ROUTE, caller_id=user.sub, payload=body.model_dump())
    result = checkout.create(
        user_id=user.sub,
        package_id=body.package_id,
        success_url=body.success_url,
        cancel_url=body.cancel_url,
        scope=scope,
    )
    logger.info(
        "checkout session",
        extra={
            "checkout_session_id": result.body.get("checkout_session_id"),
            "package_id": body.package_id,
            "replayed": result.replayed,
        },
    )
    return write_response(result, 201)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
