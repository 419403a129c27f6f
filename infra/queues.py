"""Play the template's SQS queues and event source mappings locally, as `infra.api` plays API Gateway.

`create_queues` makes every `AWS::SQS::Queue` (dead-letter queues first, with the template's
`RedrivePolicy`, which moto's SQS honours). `QueuePump` is the event source mapping: for each
function event of type `SQS` it receives up to `BatchSize` messages, invokes the real handler
(one execution environment at a time, from the same pool as the API), deletes what succeeded
and, with `ReportBatchItemFailures`, leaves the reported failures to come back. Locally a failed
message comes back at once (visibility 0) instead of after the queue's `VisibilityTimeout`.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from typing import Any

from infra.lambdas import EnvironmentPool
from infra.template import LOCAL_REGION, Stack

logger = logging.getLogger(__name__)
PUMP_ROUNDS_MAX = 100_000
IDLE_WAIT_S = 0.2


def create_queues(stack: Stack, sqs: Any) -> dict[str, str]:
    """Every queue of the template (DLQs first); returns logical id -> queue URL."""
    urls: dict[str, str] = {}
    queues = stack.of_type("AWS::SQS::Queue")
    ordered = sorted(queues, key=lambda q: "RedrivePolicy" in (queues[q].get("Properties") or {}))
    for logical_id in ordered:
        props = stack.resolve(queues[logical_id].get("Properties") or {})
        attributes: dict[str, str] = {}
        for name in ("VisibilityTimeout", "MessageRetentionPeriod", "DelaySeconds"):
            if name in props:
                attributes[name] = str(props[name])
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            redrive = {
                "deadLetterTargetArn": policy["deadLetterTargetArn"],
                "maxReceiveCount": str(policy["maxReceiveCount"]),
            }
            attributes["RedrivePolicy"] = json.dumps(redrive)
        urls[logical_id] = sqs.create_queue(QueueName=stack.physical_name(logical_id), Attributes=attributes)[
            "QueueUrl"
        ]
    return urls


@dataclass(frozen=True)
class EventSource:
    function: str
    queue: str  # logical id
    batch_size: int
    reports_failures: bool


def event_sources(stack: Stack) -> list[EventSource]:
    sources = []
    for spec, _name, props in stack.function_events("SQS"):
        queue = props["Queue"]
        logical = queue["Fn::GetAtt"][0] if isinstance(queue, dict) and "Fn::GetAtt" in queue else None
        if logical is None:
            raise ValueError(f"{spec.logical_id}: an SQS event names its queue with !GetAtt <Queue>.Arn")
        sources.append(
            EventSource(
                function=spec.logical_id,
                queue=logical,
                batch_size=int(props.get("BatchSize", 10)),
                reports_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
            )
        )
    return sources


class QueuePump:
    """The template's SQS event source mappings, played on demand (`drain`) or in a thread (`start`)."""

    def __init__(self, stack: Stack, pool: EnvironmentPool, sqs: Any = None) -> None:
        import boto3

        self.stack = stack
        self.pool = pool
        self.sqs = sqs or boto3.client("sqs", region_name=LOCAL_REGION)
        self.sources = event_sources(stack)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.invocations = 0
        self.failures = 0

    def pump_once(self) -> int:
        """One receive per event source; the number of messages handed to a function."""
        handled = 0
        for source in self.sources:
            url = self.stack.queue_url(source.queue)
            received = self.sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=min(10, source.batch_size),
                AttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not received:
                continue
            handled += len(received)
            event = {"Records": [self._record(source, url, m) for m in received]}
            self.invocations += 1
            try:
                answer = self.pool.invoke(source.function, event) or {}
                failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures", [])}
                if failed and not source.reports_failures:
                    failed = {m["MessageId"] for m in received}
            except Exception:  # the whole batch failed, as Lambda reports an invocation error
                logger.exception("%s failed on a batch of %d", source.function, len(received))
                failed = {m["MessageId"] for m in received}
            self.failures += len(failed)
            for message in received:
                if message["MessageId"] in failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
                else:
                    self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return handled

    def drain(self, rounds_max: int = PUMP_ROUNDS_MAX) -> int:
        """Pump until every queue is empty (or `rounds_max` rounds); the messages handled."""
        total = 0
        for _ in range(rounds_max):
            handled = self.pump_once()
            if handled == 0:
                return total
            total += handled
        return total

    def _record(self, source: EventSource, url: str, message: dict[str, Any]) -> dict[str, Any]:
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": message["Body"],
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {},
            "md5OfBody": message.get("MD5OfBody", ""),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.stack.arn(source.queue),
            "awsRegion": LOCAL_REGION,
        }

    # ------------------------------------------------------------ in the background (make run)
    def start(self) -> QueuePump:
        self._thread = threading.Thread(target=self._run, name="queue-pump", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                handled = self.pump_once()
            except Exception:  # keep pumping: a local engine hiccup must not stop the queue for good
                logger.exception("queue pump round failed")
                handled = 0
            if handled == 0:
                self._stop.wait(IDLE_WAIT_S)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
