"""Publish outbound events to EventBridge with PutEvents, retrying entry-level failures.

PutEvents answers 200 even when some entries were refused: each refused entry carries an
`ErrorCode` (throttling, an internal failure) and `FailedEntryCount` counts them. Those
entries, and only those, are sent again, with full-jitter backoff, up to
`PUT_ATTEMPTS_MAX` calls; what is still refused then raises `PublishFailed`, so the caller
(the stream consumer) reports the record as failed and Lambda retries it. Nothing is
dropped here.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from tokenledger.service.ports import EVENT_SOURCE, OutboundEvent, PublishFailed

PUT_ENTRIES_MAX = 10  # PutEvents takes at most 10 entries per call
PUT_ATTEMPTS_MAX = 5
RETRY_DELAY_MS_BASE = 50
RETRY_DELAY_MS_MAX = 2_000
CLIENT_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})


def make_events_client() -> Any:
    """A boto3 EventBridge client honouring AWS_ENDPOINT_URL(_EVENTS)."""
    import boto3

    return boto3.client("events", config=CLIENT_CONFIG)


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def put_entry(event: OutboundEvent, bus_name: str) -> dict[str, Any]:
    """The PutEvents request entry for one event."""
    entry: dict[str, Any] = {
        "EventBusName": bus_name,
        "Source": EVENT_SOURCE,
        "DetailType": event.detail_type,
        "Detail": json.dumps(event.detail, separators=(",", ":"), sort_keys=True),
    }
    when = _time(event.time)
    if when is not None:
        entry["Time"] = when
    return entry


class EventBridgePublisher:
    """Puts events on one bus, in the order given, each accepted once or `PublishFailed`."""

    def __init__(
        self,
        client: Any,
        bus_name: str,
        *,
        attempts_max: int = PUT_ATTEMPTS_MAX,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.bus_name = bus_name
        self.attempts_max = attempts_max
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.calls = 0
        self.retried_entries = 0

    def publish(self, events: Sequence[OutboundEvent]) -> None:
        """Put every event; raises `PublishFailed` naming those still refused after the attempts."""
        for start in range(0, len(events), PUT_ENTRIES_MAX):
            self._put_chunk(list(events[start : start + PUT_ENTRIES_MAX]))

    def _put_chunk(self, pending: list[OutboundEvent]) -> None:
        codes: list[str] = []
        for attempt in range(self.attempts_max):
            if attempt:
                self.retried_entries += len(pending)
                ceiling_ms = min(RETRY_DELAY_MS_MAX, RETRY_DELAY_MS_BASE * 2**attempt)
                self.sleep(self.rng.uniform(0, ceiling_ms) / 1000)
            self.calls += 1
            try:
                answer = self.client.put_events(Entries=[put_entry(e, self.bus_name) for e in pending])
            except (ClientError, BotoCoreError) as error:  # the whole call failed: all of them again
                codes = [type(error).__name__ if isinstance(error, BotoCoreError) else _code(error)]
                continue
            results = answer.get("Entries", [])
            if not answer.get("FailedEntryCount") and len(results) == len(pending):
                return
            # Entries answer in request order; a refused one has an ErrorCode, an accepted one an EventId.
            refused = [
                (event, result)
                for event, result in zip(pending, results, strict=False)
                if result.get("ErrorCode") or not result.get("EventId")
            ]
            refused += [(event, {"ErrorCode": "NoAnswer"}) for event in pending[len(results) :]]
            if not refused:
                return
            pending = [event for event, _ in refused]
            codes = [str(result.get("ErrorCode")) for _, result in refused]
        raise PublishFailed(
            f"{len(pending)} events not accepted by {self.bus_name} after {self.attempts_max} attempts: "
            + ", ".join(sorted(set(codes))),
            refused=pending,
            codes=codes,
        )


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "ClientError"))
