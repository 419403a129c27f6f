"""Settlement worker: SQS messages `{prediction_id, settlement_id}`, chunks written until done.

Partial batch responses: a message whose work raised is reported in `batchItemFailures`
and comes back after the visibility timeout (five times, then the dead-letter queue); the
settlement resumes from its recorded progress either way.
"""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

import json
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.observability import make_tracer

logger = Logger()
tracer = make_tracer()
predictions = bootstrap.build_predictions(bootstrap.Settings.from_env())
ID_CHARS_MAX = 160


def _message(body: str) -> tuple[str, str]:
    message = json.loads(body)
    prediction_id, settlement_id = message["prediction_id"], message["settlement_id"]
    if not all(isinstance(v, str) and 0 < len(v) <= ID_CHARS_MAX for v in (prediction_id, settlement_id)):
        raise ValueError("prediction_id and settlement_id must be short strings")
    return prediction_id, settlement_id


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    failures = []
    for record in event.get("Records", []):
        message_id = record.get("messageId")
        try:
            prediction_id, settlement_id = _message(record.get("body") or "")
            status = predictions.work(prediction_id, settlement_id, remaining_ms=context.get_remaining_time_in_millis)
            logger.info("settlement worked", extra={"settlement_id": settlement_id, "status": status})
        except Exception as error:  # reported per message: SQS redelivers it, then dead-letters it
            logger.exception("settlement message failed", extra={"error_type": type(error).__name__})
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
