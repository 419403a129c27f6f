"""Play Lambda's DynamoDB stream event source mapping locally, from what `template.yaml` declares.

A `StreamMapping` reads a table's stream and invokes the function with batches of records,
with the mapping's semantics (the properties of the function's `Type: DynamoDB` event):
`BatchSize`, `FilterCriteria` (eventName patterns), `FunctionResponseTypes:
[ReportBatchItemFailures]` (retry from the lowest failed record), `BisectBatchOnFunctionError`
(halve a batch whose invocation raised), `MaximumRetryAttempts` (then the batch's stream
position goes to the on-failure destination, here `failed_batches`). One shard at a time,
in order, one execution environment: ParallelizationFactor 1.

Readers, by engine:
- DynamoDB Local (or any endpoint): the real DynamoDB Streams API (DescribeStream,
  GetShardIterator, GetRecords) on the DynamoDB endpoint.
- moto in process: moto 5.2.5 answers DescribeStream with 404 "Not yet implemented", but it
  keeps each stream-enabled table's records (`Table.stream_shard`); the reader takes them from
  there, under moto's dispatch lock. (A cancelled transaction makes moto restore a copy of its
  tables, records included, so records are read by position, never by object.)
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from infra.lambdas import Environment
from infra.template import LOCAL_ACCOUNT_ID, LOCAL_REGION, FunctionSpec, Stack

POLL_INTERVAL_S = 0.05
SHARD_REFRESH_S = 2.0
RECORDS_PER_READ_MAX = 1000


@dataclass(frozen=True)
class MappingSpec:
    """A function's `Type: DynamoDB` event, resolved."""

    function: str
    event_name: str
    table: str  # logical id of the table whose stream it reads
    batch_size: int
    retry_attempts_max: int
    bisect: bool
    report_item_failures: bool
    event_names: frozenset[str] | None  # from FilterCriteria {"eventName": [...]}, None = all


def stream_mappings(stack: Stack) -> list[MappingSpec]:
    found = []
    for spec, name, props in stack.function_events("DynamoDB"):
        stream = props.get("Stream", {})
        table = (stream.get("Fn::GetAtt") or [""])[0] if isinstance(stream, dict) else ""
        names: set[str] | None = None
        for flt in (props.get("FilterCriteria") or {}).get("Filters", []):
            pattern = json.loads(flt["Pattern"])
            names = (names or set()) | set(pattern.get("eventName", []))
        found.append(
            MappingSpec(
                function=spec.logical_id,
                event_name=name,
                table=str(table),
                batch_size=int(props.get("BatchSize", 100)),
                retry_attempts_max=int(props.get("MaximumRetryAttempts", -1)),
                bisect=bool(props.get("BisectBatchOnFunctionError", False)),
                report_item_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
                event_names=frozenset(names) if names is not None else None,
            )
        )
    return found


def _plain_time(record: dict[str, Any]) -> dict[str, Any]:
    """A record as Lambda delivers it: ApproximateCreationDateTime in epoch seconds."""
    dynamodb = dict(record.get("dynamodb") or {})
    when = dynamodb.get("ApproximateCreationDateTime")
    if isinstance(when, datetime):
        dynamodb["ApproximateCreationDateTime"] = int(when.timestamp())
    return {**record, "dynamodb": dynamodb}


class MotoStreamReader:
    """The records moto keeps for a stream-enabled table, from position 0 on."""

    def __init__(self, table_name: str, *, account_id: str = LOCAL_ACCOUNT_ID, region: str = LOCAL_REGION) -> None:
        self.table_name = table_name
        self.account_id = account_id
        self.region = region
        self.position = 0
        self.stream_arn = f"arn:aws:dynamodb:{region}:{account_id}:table/{table_name}/stream/local"

    def read(self) -> list[dict[str, Any]]:
        from moto.dynamodb.models import dynamodb_backends

        from infra.world import moto_lock

        with moto_lock():
            table = dynamodb_backends[self.account_id][self.region].tables.get(self.table_name)
            shard = getattr(table, "stream_shard", None)
            if shard is None:
                return []
            items = shard.items[self.position : self.position + RECORDS_PER_READ_MAX]
            records = [item.to_json() for item in items]
        self.position += len(records)
        return [{**_plain_time(r), "eventSourceARN": self.stream_arn} for r in records]


class StreamsApiReader:
    """A table's stream through the DynamoDB Streams API (DynamoDB Local, LocalStack, AWS)."""

    def __init__(self, table_name: str, *, dynamodb: Any, streams: Any) -> None:
        self.table_name = table_name
        self.dynamodb = dynamodb
        self.streams = streams
        self.stream_arn: str | None = None
        self.iterators: dict[str, str | None] = {}  # shard id -> next iterator (None: closed, done)
        self.last_sequence: dict[str, str] = {}  # shard id -> sequence number of the last record read
        self.refreshed = 0.0

    def _refresh(self) -> None:
        if self.stream_arn is None:
            table = self.dynamodb.describe_table(TableName=self.table_name)["Table"]
            self.stream_arn = table.get("LatestStreamArn")
            if self.stream_arn is None:
                return
        shards: list[dict[str, Any]] = []
        start: str | None = None
        while True:
            kwargs = {"StreamArn": self.stream_arn, **({"ExclusiveStartShardId": start} if start else {})}
            description = self.streams.describe_stream(**kwargs)["StreamDescription"]
            shards += description.get("Shards", [])
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        known = set(self.iterators)
        for shard in shards:  # parents are listed before children: read in that order
            if shard["ShardId"] in known:
                continue
            self.iterators[shard["ShardId"]] = self._iterator(shard["ShardId"])
        self.refreshed = time.monotonic()

    def read(self) -> list[dict[str, Any]]:
        if self.stream_arn is None or time.monotonic() - self.refreshed > SHARD_REFRESH_S:
            self._refresh()
        records: list[dict[str, Any]] = []
        for shard_id, iterator in list(self.iterators.items()):
            if iterator is None:
                continue
            try:
                answer = self.streams.get_records(ShardIterator=iterator, Limit=RECORDS_PER_READ_MAX)
            except (
                self.streams.exceptions.TrimmedDataAccessException,
                self.streams.exceptions.ExpiredIteratorException,
            ):
                # DynamoDB Local answers an iterator taken on an empty shard this way once records
                # arrive; and iterators expire after 15 minutes. Take a new one after the last record read.
                self.iterators[shard_id] = self._iterator(shard_id)
                continue
            self.iterators[shard_id] = answer.get("NextShardIterator")
            found = answer.get("Records", [])
            if found:
                self.last_sequence[shard_id] = found[-1]["dynamodb"]["SequenceNumber"]
            records += [{**_plain_time(r), "eventSourceARN": self.stream_arn} for r in found]
        return records

    def _iterator(self, shard_id: str) -> str:
        last = self.last_sequence.get(shard_id)
        position = {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": last} if last else {}
        iterator: str = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard_id, **(position or {"ShardIteratorType": "TRIM_HORIZON"})
        )["ShardIterator"]
        return iterator


def reader_for(engine: str, table_name: str) -> MotoStreamReader | StreamsApiReader:
    """The stream reader for the DynamoDB engine in use (`moto` or anything with the Streams API)."""
    if engine == "moto":
        return MotoStreamReader(table_name)
    import os

    import boto3

    endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
    return StreamsApiReader(
        table_name,
        dynamodb=boto3.client("dynamodb", region_name=LOCAL_REGION),
        streams=boto3.client("dynamodbstreams", region_name=LOCAL_REGION, endpoint_url=endpoint),
    )


@dataclass
class FailedBatch:
    """What Lambda sends to the on-failure destination: where the records are, not the records."""

    function: str
    stream_arn: str | None
    first_sequence_number: str
    last_sequence_number: str
    batch_size: int
    attempts: int
    reason: str


@dataclass
class StreamMapping:
    """One event source mapping, played by a background thread (or step by step with `pump`)."""

    spec: MappingSpec
    function: FunctionSpec
    reader: Any
    retry_delay_s: float = 0.2
    pending: list[dict[str, Any]] = field(default_factory=list)
    failed_batches: list[FailedBatch] = field(default_factory=list)
    invocations: int = 0
    errors: int = 0
    retries: int = 0
    log: Callable[[str], None] | None = None
    _environment: Environment | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _attempts: int = 0  # failed tries of the batch at the head of `pending`
    _bisect_to: int | None = None  # after an error, the next batch is at most this long

    def _accept(self, record: dict[str, Any]) -> bool:
        return self.spec.event_names is None or record.get("eventName") in self.spec.event_names

    def poll(self) -> int:
        """Read what the stream has now; returns how many records (after the filter) arrived."""
        arrived = [r for r in self.reader.read() if self._accept(r)]
        self.pending.extend(arrived)
        return len(arrived)

    def pump(self) -> bool:
        """Invoke the function once on the head of `pending`, as the mapping would. False if nothing to do."""
        with self._lock:
            if not self.pending:
                return False
            size = min(self.spec.batch_size, self._bisect_to or self.spec.batch_size)
            batch = self.pending[:size]
            if self._environment is None:
                self._environment = Environment(self.function)
            self.invocations += 1
            try:
                response = self._environment.invoke({"Records": batch})
            except Exception as error:  # a function error: the whole batch is retried (bisected)
                self.errors += 1
                self._failed(batch, f"function error: {type(error).__name__}")
                if self.spec.bisect and len(batch) > 1:
                    self._bisect_to = max(1, len(batch) // 2)
                return True
            failures = (response or {}).get("batchItemFailures") or [] if self.spec.report_item_failures else []
            failed_ids = {str(f.get("itemIdentifier")) for f in failures}
            first_failed = next((i for i, r in enumerate(batch) if r["dynamodb"]["SequenceNumber"] in failed_ids), None)
            if first_failed is None:
                del self.pending[: len(batch)]
                self._attempts = 0
                self._bisect_to = None
                return True
            # Checkpoint before the first failed record; the retry starts there.
            del self.pending[:first_failed]
            if first_failed:
                self._attempts = 0
            self._failed(batch[first_failed:], "batch item failures")
            return True

    def _failed(self, batch: list[dict[str, Any]], reason: str) -> None:
        self._attempts += 1
        self.retries += 1
        limit = self.spec.retry_attempts_max
        if limit < 0 or self._attempts <= limit:
            return
        first, last = batch[0]["dynamodb"]["SequenceNumber"], batch[-1]["dynamodb"]["SequenceNumber"]
        self.failed_batches.append(
            FailedBatch(
                self.spec.function, batch[0].get("eventSourceARN"), first, last, len(batch), self._attempts, reason
            )
        )
        if self.log:
            self.log(f"{self.spec.function}: {len(batch)} records to the on-failure destination ({reason})")
        del self.pending[: len(batch)]
        self._attempts = 0
        self._bisect_to = None

    def drain(self, *, timeout_s: float = 30.0) -> bool:
        """Poll and invoke until the stream has nothing new and nothing is pending. False on timeout."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.poll()
            if not self.pending:
                return True
            if not self.pump() or self._attempts:
                time.sleep(self.retry_delay_s)
        return False

    # ------------------------------------------------------------ background
    def start(self) -> StreamMapping:
        self._thread = threading.Thread(target=self._run, name=f"stream-{self.spec.function}", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
                worked = self.pump()
            except Exception as error:  # the engine went away (stopping) or a transient read error
                if self._stop.is_set():
                    return
                if self.log:
                    self.log(f"{self.spec.function}: stream read failed: {type(error).__name__}: {error}")
                worked = False
            if not worked:
                self._stop.wait(POLL_INTERVAL_S)
            elif self._attempts:
                self._stop.wait(self.retry_delay_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def start_mappings(
    stack: Stack, engine: str, *, log: Callable[[str], None] | None = None, background: bool = True
) -> list[StreamMapping]:
    """A `StreamMapping` for every stream event in the template, started unless `background=False`."""
    mappings = []
    functions = stack.functions()
    for spec in stream_mappings(stack):
        reader = reader_for(engine, stack.physical_name(spec.table))
        mapping = StreamMapping(spec, functions[spec.function], reader, log=log)
        mappings.append(mapping.start() if background else mapping)
    return mappings


@contextlib.contextmanager
def running_mappings(stack: Stack, engine: str) -> Any:
    mappings = start_mappings(stack, engine)
    try:
        yield mappings
    finally:
        for mapping in mappings:
            mapping.stop()
