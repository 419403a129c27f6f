"""Outbound events: every entry reaches the bus at least once, in seq order per user, on both engines.

The entries table's stream feeds the real publisher function through `infra.streams` (the
event source mapping as the template declares it); the bus is moto's, tapped by
`infra.bus`. Faults are injected at EventBridge's PutEvents (whole calls and single entries).
docs/events.md.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from infra import event_schemas
from infra.bus import BUS_LOG, eventbridge_faults, install_bus_tap
from infra.queues import QueuePump
from infra.streams import StreamMapping, start_mappings
from tests.conftest import STACK, Client
from tokenledger.adapters import eventbridge
from tokenledger.service.events import DETAIL_TYPES

BUS = STACK.physical_name("EventBus")
LOW = int(STACK.parameters["LowBalanceTokens"])


def validate(event: dict[str, Any]) -> None:
    """The event as a consumer gets it matches its detail-type's schema (docs/events/)."""
    schema = event_schemas.detail_schema(event["detail-type"])
    jsonschema.Draft4Validator(schema).validate(event["detail"])
    undeclared = set(event["detail"]) - set(schema["properties"])
    assert not undeclared, f"declare {sorted(undeclared)} in {event_schemas.schema_file(event['detail-type'])}"


@pytest.fixture
def mapping(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[StreamMapping]:
    install_bus_tap()
    BUS_LOG.clear()
    monkeypatch.setattr(eventbridge, "RETRY_DELAY_MS_BASE", 0)  # the publisher's backoff, not the test's time
    found = stream_mapping(start_mappings(STACK, aws["engine"], background=False))
    found.retry_delay_s = 0
    yield found


def stream_mapping(mappings: list[StreamMapping], event_name: str = "EntriesStream") -> StreamMapping:
    """The template's stream event `event_name` on the publisher (entries, or the predictions table's)."""
    (found,) = [m for m in mappings if m.spec.event_name == event_name]
    return found


def published(detail_type: str = "Entry Created") -> list[dict[str, Any]]:
    return [e for e in BUS_LOG.of(BUS, detail_type) if e["source"] == "tokenledger"]


def assert_every_entry_once_in_order(entries: list[dict[str, Any]]) -> None:
    """First publications per user run seq 1..n in order; every entry's detail is the entry."""
    first: dict[str, dict[str, Any]] = {}
    order: dict[str, list[int]] = {}
    for event in published():
        detail = event["detail"]
        if detail["entry_id"] not in first:
            first[detail["entry_id"]] = detail
            order.setdefault(detail["user_id"], []).append(detail["seq"])
    assert {e["entry_id"] for e in entries} == set(first)
    for entry in entries:
        assert first[entry["entry_id"]] == entry
    for user, seqs in order.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"{user}: first publications in order {seqs}"


def test_a_write_is_published_as_entry_created_with_the_api_entry(
    mapping: StreamMapping, admin: Client, user: Client
) -> None:
    granted = admin.post(f"/v1/admin/accounts/{user.sub}/entries", {"type": "grant", "amount": LOW + 50, "reason": "r"})
    committed = user.post("/v1/commitments", {"prediction_id": "p-1", "amount": 60, "metadata": {"k": "v"}})
    assert granted.status == committed.status == 201
    assert mapping.drain(timeout_s=10)
    entries = [granted.json["entry"], committed.json["entry"]]
    assert_every_entry_once_in_order(entries)
    # The commitment took the balance from LOW + 50 to LOW - 10: one Balance Low, for seq 2.
    (low,) = published("Balance Low")
    assert low["detail"]["seq"] == 2 and low["detail"]["balance_before"] == LOW + 50
    assert low["detail"]["balance"] == LOW - 10 and low["detail"]["threshold"] == LOW
    assert low["detail"]["event_id"] == f"{committed.json['entry']['entry_id']}:balance-low"
    for event in BUS_LOG.of(BUS):
        validate(event)
    assert not mapping.failed_batches


def test_entry_level_and_whole_call_failures_are_retried_until_every_entry_is_published(
    mapping: StreamMapping, admin: Client
) -> None:
    users = [f"{admin.sub}-u{i}" for i in range(2)]
    entries = []
    for n in range(4):
        for target in users:
            reply = admin.post(
                f"/v1/admin/accounts/{target}/entries", {"type": "grant", "amount": 10 + n, "reason": "r"}
            )
            entries.append(reply.json["entry"])
    calls = {"n": 0}

    def decide(batch: list[dict[str, Any]]) -> str | list[str | None] | None:
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            return "ServiceUnavailable"  # the whole call fails
        if calls["n"] % 3 == 1:
            return ["ThrottlingException" if i == 0 else None for i in range(len(batch))]
        return None

    with eventbridge_faults(decide):
        assert mapping.drain(timeout_s=20)
    assert calls["n"] > len(entries)
    assert_every_entry_once_in_order(entries)
    assert not mapping.failed_batches


def test_an_eventbridge_outage_holds_events_in_order_and_loses_none(
    mapping: StreamMapping, user: Client, admin: Client
) -> None:
    """EventBridge refuses everything for a while: nothing is skipped, the stream waits, then catches up."""
    entries = [
        admin.post(f"/v1/admin/accounts/{user.sub}/entries", {"type": "grant", "amount": 5, "reason": "r"}).json[
            "entry"
        ]
        for _ in range(3)
    ]
    with eventbridge_faults(lambda batch: "ServiceUnavailable"):
        mapping.poll()
        for _ in range(6):  # six invocations during the outage (retries, each bisected further)
            assert mapping.pump()
        assert published() == [] and len(mapping.pending) == 3
    assert mapping.errors == 6 and not mapping.failed_batches  # retries bounded by 10,000: far off
    assert mapping.drain(timeout_s=10)
    assert_every_entry_once_in_order(entries)


def test_past_its_retries_a_batch_goes_to_the_failure_destination_never_silently(
    mapping: StreamMapping, user: Client, admin: Client
) -> None:
    admin.post(f"/v1/admin/accounts/{user.sub}/entries", {"type": "grant", "amount": 5, "reason": "r"})
    mapping.spec = type(mapping.spec)(**{**mapping.spec.__dict__, "retry_attempts_max": 2})
    with eventbridge_faults(lambda batch: ["InternalFailure"] * len(batch)):
        assert mapping.drain(timeout_s=10)
    (failed,) = mapping.failed_batches
    assert failed.batch_size == 1 and failed.attempts == 3 and failed.stream_arn
    assert published() == []


def test_stream_records_that_are_not_new_entries_publish_nothing(mapping: StreamMapping) -> None:
    """A MODIFY, or an item without entry fields, is ignored (and a hostile image never reaches the bus)."""
    from infra.lambdas import Environment

    environment = Environment(mapping.function)
    records = [
        {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": "1", "NewImage": {"entry_id": {"S": "x"}}}},
        {"eventName": "INSERT", "dynamodb": {"SequenceNumber": "2", "NewImage": {"pk": {"S": "not-an-entry"}}}},
    ]
    assert environment.invoke({"Records": records}) == {"batchItemFailures": []}
    assert published() == []


def test_reconciliation_publishes_its_counts(aws: dict[str, Any], api: Any, admin: Client) -> None:
    install_bus_tap()
    BUS_LOG.clear()
    admin.post("/v1/admin/accounts/u-rec/entries", {"type": "grant", "amount": 5, "reason": "r"})
    report = api.pool.invoke("ReconcileFunction", {})
    (event,) = published("Reconciliation Completed")
    validate(event)
    assert event["detail"]["run_id"] == report["run_id"] and event["detail"]["healthy"] is report["healthy"]
    assert event["detail"]["accounts_checked"] == report["accounts_checked"]


def test_a_completed_settlement_is_published_once_from_the_predictions_stream(
    aws: dict[str, Any], admin: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_bus_tap()
    BUS_LOG.clear()
    monkeypatch.setattr(eventbridge, "RETRY_DELAY_MS_BASE", 0)
    predictions = stream_mapping(start_mappings(STACK, aws["engine"], background=False), "PredictionsStream")
    prediction_id = f"p-{uuid.uuid4().hex[:10]}"
    user = Client(admin.api, f"u-{uuid.uuid4().hex[:12]}")
    assert (
        admin.post(f"/v1/admin/accounts/{user.sub}/entries", {"type": "grant", "amount": 50, "reason": "r"}).status
        == 201
    )
    assert user.post("/v1/commitments", {"prediction_id": prediction_id, "amount": 20}).status == 201
    path = f"/v1/admin/predictions/{prediction_id}/settlement"
    assert admin.post(path, {"reason": "void", "outcome": "cancelled"}).status == 202
    assert predictions.drain(timeout_s=10)
    assert published("Settlement Completed") == []  # pending and running are not the fact

    QueuePump(STACK, admin.api.pool).drain()
    assert predictions.drain(timeout_s=10)
    done = admin.get(path).json
    assert done["status"] == "completed"
    (event,) = published("Settlement Completed")
    validate(event)
    detail = event["detail"]
    assert detail["event_id"] == f"settlement:{done['settlement_id']}"
    assert (detail["prediction_id"], detail["outcome"], detail["taken_in"]) == (prediction_id, "cancelled", 20)
    assert (detail["paid_total"], detail["entries_written"], detail["completed_at"]) == (20, 1, done["completed_at"])

    # A later look at the settlement (or a redelivered record) publishes nothing new.
    assert admin.post(path, {"reason": "void", "outcome": "cancelled"}).status == 202
    assert predictions.drain(timeout_s=10)
    assert len(published("Settlement Completed")) == 1


def test_the_schema_registry_in_the_template_is_the_docs_schemas() -> None:
    resources = STACK.resources
    for detail_type in DETAIL_TYPES:
        schema = event_schemas.detail_schema(detail_type)
        jsonschema.Draft4Validator.check_schema(schema)
        declared = resources[event_schemas.logical_id(detail_type)]["Properties"]
        assert declared["Type"] == "JSONSchemaDraft4"
        assert json.loads(declared["Content"]) == event_schemas.envelope(detail_type), (
            "regenerate the registry block: python -m infra.event_schemas"
        )


def test_a_given_up_batch_is_redriven_from_its_failure_message(
    mapping: StreamMapping, user: Client, admin: Client, engine: str
) -> None:
    """infra.events_redrive: the on-failure message names the records; they are read again and republished."""
    from infra import events_redrive
    from infra.lambdas import Environment

    entries = [
        admin.post(f"/v1/admin/accounts/{user.sub}/entries", {"type": "grant", "amount": 5, "reason": "r"}).json[
            "entry"
        ]
        for _ in range(2)
    ]
    mapping.spec = type(mapping.spec)(**{**mapping.spec.__dict__, "retry_attempts_max": 0})
    with eventbridge_faults(lambda batch: "ServiceUnavailable"):
        assert mapping.drain(timeout_s=10)
    assert published() == [] and mapping.failed_batches
    records = {}
    # The records are still in the stream: read them again the way the mapping did (moto has no Streams API).
    reread = stream_mapping(start_mappings(STACK, engine, background=False))
    reread.poll()
    for record in reread.pending:
        records[record["dynamodb"]["SequenceNumber"]] = record
    if engine != "moto":  # the Streams API path of the tool itself
        streams = reread.reader.streams
        (shard,) = streams.describe_stream(StreamArn=reread.reader.stream_arn)["StreamDescription"]["Shards"]
        first = mapping.failed_batches[0]
        info = events_redrive.BatchInfo(
            first.stream_arn or "", shard["ShardId"], first.first_sequence_number, first.last_sequence_number, 1
        )
        reread_seqs = [r["dynamodb"]["SequenceNumber"] for r in events_redrive.stream_records(streams, info)]
        expected = [seq for seq in records if int(info.first) <= int(seq) <= int(info.last)]
        assert reread_seqs == expected and len(expected) == first.batch_size
    messages = [
        (
            f"receipt-{n}",
            json.dumps(
                {
                    "DDBStreamBatchInfo": {
                        "streamArn": failed.stream_arn,
                        "shardId": "shard-0",
                        "startSequenceNumber": failed.first_sequence_number,
                        "endSequenceNumber": failed.last_sequence_number,
                        "batchSize": failed.batch_size,
                    }
                }
            ),
        )
        for n, failed in enumerate(mapping.failed_batches)
    ] + [("receipt-junk", "{}")]
    deleted: list[str] = []

    def read(batch: events_redrive.BatchInfo) -> list[dict[str, Any]]:
        return [r for seq, r in records.items() if int(batch.first) <= int(seq) <= int(batch.last)]

    environment = Environment(mapping.function)
    outcome = events_redrive.redrive(iter(messages), read, environment.invoke, deleted.append, say=lambda line: None)
    assert outcome.redriven == len(mapping.failed_batches) and outcome.kept == 1  # the junk message is kept
    assert deleted == [f"receipt-{n}" for n in range(len(mapping.failed_batches))]
    assert_every_entry_once_in_order(entries)
