"""Stripe webhooks: credit purchases exactly once, claw back refunds and disputes.

No JWT here: Stripe authenticates with `Stripe-Signature`, verified before anything else.
The whole event is never logged (it carries customer data); only ids, type and outcome.
"""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

import base64

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.domain.errors import InvalidSignature
from tokenledger.domain.stripe_outcomes import Outcome
from tokenledger.http.api import header, json_response, make_resolver
from tokenledger.http.shapes import problem_responses
from tokenledger.observability import make_tracer
from tokenledger.service.stripe_events import PurchaseNotRecorded, StripeEventConflict, outcome_metrics

logger = Logger()
tracer = make_tracer()
metrics = Metrics()
app = make_resolver()
webhook = bootstrap.build_stripe_webhook(bootstrap.Settings.from_env())


@app.post(
    "/v1/webhooks/stripe",
    responses={
        200: {"description": "The event was processed (or deliberately ignored)"},
        **problem_responses(400, 409, 422),
    },
)
def receive_stripe_event() -> Response[dict]:
    metrics.add_metric(name="StripeDeliveries", unit=MetricUnit.Count, value=1)
    try:
        event = webhook.verifier.verify(raw_body(), header(app, "Stripe-Signature"))
    except InvalidSignature:
        metrics.add_metric(name="StripeInvalidSignatures", unit=MetricUnit.Count, value=1)
        raise
    try:
        record = webhook.credits.handle(event)
    except StripeEventConflict:
        metrics.add_metric(name="StripeEventConflicts", unit=MetricUnit.Count, value=1)
        logger.warning("stripe event id reused with other content", extra={"stripe_event_id": event.get("id")})
        raise
    for name, value in outcome_metrics(record):
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
    logger.info(
        "stripe event processed",
        extra={
            "stripe_event_id": record.event_id,
            "stripe_event_type": record.type,
            "outcome": str(record.outcome),
            "payment_id": record.payment_id,
            "entry_id": record.entry_id,
        },
    )
    if record.outcome is Outcome.PRICE_MISMATCH:
        logger.warning(
            "stripe payment at a price other than the catalog's: not credited",
            extra={
                "stripe_event_id": record.event_id,
                "payment_id": record.payment_id,
                "package_id": record.package_id,
                "amount_subtotal": record.amount_subtotal,
                "currency": record.currency,
            },
        )
    if record.retry_later:
        raise PurchaseNotRecorded(f"no purchase is recorded for payment {record.payment_id} yet; retry later")
    return json_response(200, {"received": True})


def raw_body() -> str | bytes:
    """The body exactly as sent: bytes when API Gateway base64-encoded it (verified, then decoded)."""
    body = app.current_event.body or ""
    return base64.b64decode(body) if app.current_event.is_base64_encoded else body


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict, context: LambdaContext) -> dict:
    return app.resolve(event, context)


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
