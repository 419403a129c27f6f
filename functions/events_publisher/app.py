"""The entries table's DynamoDB Stream to the EventBridge bus: every entry, at least once, in seq order.

Each stream record (an `INSERT` of an entry, new image) becomes `Entry Created`, plus
`Balance Low` or `Chargeback Unrecovered` when the entry calls for them
(`tokenledger.service.events`). Powertools' batch processor reports partial failures: a
record whose events the bus did not accept after the publisher's retries is returned in
`batchItemFailures`, and Lambda retries from it (the template bounds the retries and sends
what is left to the on-failure queue). Once one record fails, the records after it in the
batch are failed too, unpublished: Lambda redelivers them anyway, and publishing them now
would put a user's later entry on the bus before an earlier one. docs/events.md.
"""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.observability import make_tracer
from tokenledger.service.events import entry_events, settlement_completed_events
from tokenledger.service.ports import OutboundEvent, PublishFailed

logger = Logger()
tracer = make_tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
stream = bootstrap.build_stream_publishing(bootstrap.Settings.from_env())
publisher = stream.publisher
LOW_BALANCE_TOKENS = stream.low_balance_tokens
# Stop taking new records this close to the timeout: the rest are reported failed, not cut off.
REMAINING_MS_MIN = 3_000


class SkippedAfterFailure(Exception):
    """An earlier record of this batch failed; this one waits for Lambda's retry (seq order)."""


class _Batch:
    """Per-invocation state: whether a record failed, and the context for the time check."""

    failed = False
    context: Any = None


batch = _Batch()


def record_handler(record: DynamoDBRecord) -> None:
    if batch.failed:
        raise SkippedAfterFailure("an earlier record of this batch failed")
    context = batch.context
    if context is not None and context.get_remaining_time_in_millis() < REMAINING_MS_MIN:
        batch.failed = True
        raise SkippedAfterFailure("too close to the timeout")
    raw = record.raw_event
    change = raw.get("dynamodb") or {}
    image = change.get("NewImage")
    if raw.get("eventName") == "MODIFY" and image and "sk" in image:  # the predictions table's stream
        new = stream.plain_image(image)
        settlement = settlement_completed_events(stream.plain_image(change.get("OldImage") or {}), new)
        _publish(settlement, {"settlement_id": new.get("settlement_id")})
        return
    if raw.get("eventName") != "INSERT" or not image or "entry_id" not in image:
        metrics.add_metric(name="StreamRecordsIgnored", unit=MetricUnit.Count, value=1)
        return  # entries are immutable: only an entry's INSERT means anything here
    if image.get("metadata") == {}:  # DynamoDB Local 3.3.0's stream drops an empty map's "M"
        image = {**image, "metadata": {"M": {}}}
    entry = stream.entry_from_image(image)
    events = entry_events(entry.to_api(), low_balance_tokens=LOW_BALANCE_TOKENS)
    _publish(events, {"user_id": entry.user_id, "seq": entry.seq})


def _publish(events: list[OutboundEvent], about: dict[str, Any]) -> None:
    """Publish one record's events; a refusal fails this record and every later one of the batch."""
    if not events:
        metrics.add_metric(name="StreamRecordsIgnored", unit=MetricUnit.Count, value=1)
        return
    try:
        publisher.publish(events)
    except PublishFailed as refused:
        batch.failed = True
        logger.warning(
            "events not accepted by the bus; the record will be retried",
            extra={**about, "codes": sorted(set(refused.codes))},
        )
        raise
    metrics.add_metric(name="EventsPublished", unit=MetricUnit.Count, value=len(events))


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    batch.failed = False
    batch.context = context
    try:
        return process_partial_response(  # type: ignore[return-value]
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    finally:
        batch.context = None


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
