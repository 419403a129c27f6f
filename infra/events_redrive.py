"""Republish the entries whose events were given up (EventsFailureQueue), after EventsFailureAlarm.

    python -m infra.events_redrive --stack tokenledger-prod [--dry-run] [--messages-max 100]

Each message in the queue is Lambda's on-failure record of a stream batch: where the records
are (``DDBStreamBatchInfo``: stream, shard, first and last sequence number), not the records.
For each, this reads those records from the stream again (DynamoDB keeps them 24 hours) and
invokes the publisher function with them, synchronously; a message is deleted only when the
function published every record. Republishing is safe: consumers deduplicate (docs/events.md).
Records older than the stream's 24 hours are gone from it: the message is kept and reported
(republish those entries from the table by hand).

Exit codes: 0 every message redriven (or none), 1 some kept (the reason is printed), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

MESSAGES_MAX_DEFAULT = 100
PAGES_PER_BATCH_MAX = 50
EXIT_OK = 0
EXIT_KEPT = 1
EXIT_USAGE = 2


@dataclass(frozen=True)
class BatchInfo:
    stream_arn: str
    shard_id: str
    first: str
    last: str
    size: int

    @classmethod
    def of(cls, body: str) -> BatchInfo:
        info = json.loads(body)["DDBStreamBatchInfo"]
        return cls(
            stream_arn=str(info["streamArn"]),
            shard_id=str(info["shardId"]),
            first=str(info["startSequenceNumber"]),
            last=str(info["endSequenceNumber"]),
            size=int(info.get("batchSize", 0)),
        )


def stream_records(streams: Any, batch: BatchInfo) -> list[dict[str, Any]]:
    """The batch's records, read again from the stream (empty once the stream has trimmed them)."""
    try:
        iterator = streams.get_shard_iterator(
            StreamArn=batch.stream_arn,
            ShardId=batch.shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=batch.first,
        )["ShardIterator"]
    except streams.exceptions.TrimmedDataAccessException:
        return []
    records: list[dict[str, Any]] = []
    for _ in range(PAGES_PER_BATCH_MAX):
        answer = streams.get_records(ShardIterator=iterator)
        for record in answer.get("Records", []):
            if int(record["dynamodb"]["SequenceNumber"]) > int(batch.last):
                return records
            records.append({**record, "eventSourceARN": batch.stream_arn})
        iterator = answer.get("NextShardIterator")
        if not iterator or (not answer.get("Records") and records):
            break
    return records


@dataclass
class Outcome:
    redriven: int = 0
    kept: int = 0
    records: int = 0


def redrive(
    messages: Iterator[tuple[str, str]],
    read: Callable[[BatchInfo], list[dict[str, Any]]],
    invoke: Callable[[dict[str, Any]], dict[str, Any]],
    delete: Callable[[str], None],
    *,
    dry_run: bool = False,
    say: Callable[[str], None] = print,
) -> Outcome:
    """For each (receipt handle, body): read the records, invoke the publisher, delete when all published."""
    outcome = Outcome()
    for receipt, body in messages:
        try:
            batch = BatchInfo.of(body)
        except (ValueError, KeyError, TypeError):
            say("kept a message that is not a stream batch's on-failure record")
            outcome.kept += 1
            continue
        records = read(batch)
        where = f"shard {batch.shard_id} {batch.first}..{batch.last}"
        if not records:
            say(f"kept {where}: the stream no longer holds these records (older than 24 h?); see docs/events.md")
            outcome.kept += 1
            continue
        if dry_run:
            say(f"would republish {len(records)} records of {where}")
            continue
        answer = invoke({"Records": records})
        failures = answer.get("batchItemFailures") if isinstance(answer, dict) else None
        if answer.get("FunctionError") or failures:
            say(f"kept {where}: the publisher did not publish every record ({answer})")
            outcome.kept += 1
            continue
        delete(receipt)
        outcome.redriven += 1
        outcome.records += len(records)
        say(f"republished {len(records)} records of {where}")
    return outcome


def _aws(args: argparse.Namespace) -> int:  # pragma: no cover - needs a deployed stack
    import boto3

    cloudformation = boto3.client("cloudformation")
    outputs = {
        o["OutputKey"]: o["OutputValue"]
        for o in cloudformation.describe_stacks(StackName=args.stack)["Stacks"][0].get("Outputs", [])
    }
    queue_url = outputs["EventsFailureQueueUrl"]
    function = cloudformation.describe_stack_resource(
        StackName=args.stack, LogicalResourceId="EventsPublisherFunction"
    )["StackResourceDetail"]["PhysicalResourceId"]
    sqs, streams, lambda_client = boto3.client("sqs"), boto3.client("dynamodbstreams"), boto3.client("lambda")

    def messages() -> Iterator[tuple[str, str]]:
        seen = 0
        while seen < args.messages_max:
            found = sqs.receive_message(
                QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, VisibilityTimeout=300
            )
            batch = found.get("Messages", [])
            if not batch:
                return
            for message in batch[: args.messages_max - seen]:
                seen += 1
                yield message["ReceiptHandle"], message["Body"]

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        answer = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
        payload: dict[str, Any] = json.loads(answer["Payload"].read() or b"{}")
        if answer.get("FunctionError"):
            payload["FunctionError"] = answer["FunctionError"]
        return payload

    outcome = redrive(
        messages(),
        lambda batch: stream_records(streams, batch),
        invoke,
        lambda receipt: sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=receipt),
        dry_run=args.dry_run,
    )
    print(f"{outcome.redriven} batches ({outcome.records} records) republished, {outcome.kept} kept")
    return EXIT_KEPT if outcome.kept else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.events_redrive", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, help="the CloudFormation stack (its outputs name the queue)")
    parser.add_argument("--dry-run", action="store_true", help="read and report, republish and delete nothing")
    parser.add_argument("--messages-max", type=int, default=MESSAGES_MAX_DEFAULT, help="stop after this many messages")
    args = parser.parse_args(argv)
    if args.messages_max < 1:
        parser.error("--messages-max must be at least 1")
    return _aws(args)


if __name__ == "__main__":
    sys.exit(main())
