"""The local EventBridge bus: moto's, with a tap that records every event it accepted.

Locally the template's bus lives in moto (`infra.world.create_event_buses`), whichever
DynamoDB engine runs. `install_bus_tap()` wraps moto's `put_events` so each accepted
event is appended, as the envelope EventBridge delivers to a target, to `BUS_LOG`: the
local stack serves it to `tokenledger events --follow`, tests and the chaos run read it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.api_calls import intercept_service
from infra.template import LOCAL_ACCOUNT_ID, LOCAL_REGION

EVENTS_KEPT_MAX = 100_000  # the oldest are dropped past this (a local run, not an archive)


@dataclass
class BusLog:
    """Every event the local buses accepted, in acceptance order, each with a position."""

    events: list[dict[str, Any]] = field(default_factory=list)
    first_position: int = 0
    _changed: threading.Condition = field(default_factory=threading.Condition)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def append(self, envelope: dict[str, Any]) -> None:
        with self._changed:
            self.events.append(envelope)
            if len(self.events) > EVENTS_KEPT_MAX:
                drop = len(self.events) - EVENTS_KEPT_MAX
                del self.events[:drop]
                self.first_position += drop
            self._changed.notify_all()

    @property
    def end(self) -> int:
        """The position after the last event."""
        with self._changed:
            return self.first_position + len(self.events)

    def since(
        self,
        position: int,
        *,
        wait_s: float = 0.0,
        accept: Callable[[dict[str, Any]], bool] | None = None,
    ) -> tuple[list[dict[str, Any]], int]:
        """Events from `position` on that `accept` takes, waiting up to `wait_s` for one; and the next position."""
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._changed:
            while True:
                start = max(position, self.first_position)
                found = [e for e in self.events[start - self.first_position :] if accept is None or accept(e)]
                end = self.first_position + len(self.events)
                remaining = deadline - time.monotonic()
                if found or remaining <= 0:
                    return found, end
                position = end
                self._changed.wait(remaining)

    def of(self, bus_name: str | None = None, detail_type: str | None = None) -> list[dict[str, Any]]:
        with self._changed:
            return [
                e
                for e in self.events
                if (bus_name is None or e["bus"] == bus_name)
                and (detail_type is None or e["detail-type"] == detail_type)
            ]

    def clear(self) -> None:
        with self._changed:
            self.first_position += len(self.events)
            self.events.clear()


BUS_LOG = BusLog()
_tap_lock = threading.Lock()
_tapped = False


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        when = value if value.tzinfo else value.replace(tzinfo=UTC)
    elif isinstance(value, int | float):
        when = datetime.fromtimestamp(float(value), UTC)
    else:
        return str(value) if value else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def install_bus_tap() -> None:
    """Wrap moto's `EventsBackend.put_events` once: every accepted event goes to `BUS_LOG` too."""
    global _tapped
    with _tap_lock:
        if _tapped:
            return
        from moto.events.models import EventsBackend

        original = EventsBackend.put_events

        def put_events(self: Any, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
            results = original(self, events)
            for event, result in zip(events, results, strict=False):
                if not result.get("EventId"):
                    continue
                bus = str(event.get("EventBusName") or "default").rsplit("/", 1)[-1]
                BUS_LOG.append(
                    {
                        "version": "0",
                        "id": result["EventId"],
                        "detail-type": event["DetailType"],
                        "source": event["Source"],
                        "account": getattr(self, "account_id", LOCAL_ACCOUNT_ID),
                        "time": _iso(event.get("Time")),
                        "region": getattr(self, "region_name", LOCAL_REGION),
                        "resources": list(event.get("Resources") or []),
                        "detail": json.loads(event["Detail"]),
                        "bus": bus,
                    }
                )
            return results

        EventsBackend.put_events = put_events  # type: ignore[method-assign]
        _tapped = True


# ---------------------------------------------------------------- faults at EventBridge
# What a fault decision says about one PutEvents call: None (no fault), an error code for the
# whole call (raised as a ClientError: nothing accepted), or one entry-level error code per entry
# (None: that entry goes through), as PutEvents answers with FailedEntryCount > 0.
FaultDecision = str | list[str | None] | None
_decide: Callable[[list[dict[str, Any]]], FaultDecision] | None = None
INJECTED: dict[str, int] = {}


def install_eventbridge_fault_hook() -> None:
    """PutEvents consults `_decide` while one is set (`infra.api_calls`, installed once)."""
    intercept_service("events", _put_events_with_faults)


def _put_events_with_faults(
    original: Callable[..., Any], client: Any, operation_name: str, api_params: dict[str, Any]
) -> Any:
    from botocore.exceptions import ClientError

    decide = _decide
    if decide is None or operation_name != "PutEvents":
        return original(client, operation_name, api_params)
    entries = list(api_params.get("Entries", []))
    decision = decide(entries)
    if decision is None:
        return original(client, operation_name, api_params)
    if isinstance(decision, str):
        INJECTED[decision] = INJECTED.get(decision, 0) + 1
        raise ClientError({"Error": {"Code": decision, "Message": "injected"}}, operation_name)
    through = [e for e, code in zip(entries, decision, strict=True) if code is None]
    answered = (
        iter(original(client, operation_name, {**api_params, "Entries": through})["Entries"]) if through else iter([])
    )
    results: list[dict[str, Any]] = []
    for code in decision:
        if code is None:
            results.append(next(answered))
        else:
            INJECTED[code] = INJECTED.get(code, 0) + 1
            results.append({"ErrorCode": code, "ErrorMessage": "injected"})
    failed = sum(1 for r in results if r.get("ErrorCode"))
    return {"FailedEntryCount": failed, "Entries": results}


@contextlib.contextmanager
def eventbridge_faults(decide: Callable[[list[dict[str, Any]]], FaultDecision]) -> Iterator[None]:
    """Inject faults into every PutEvents call made in this process inside the block."""
    global _decide
    install_eventbridge_fault_hook()
    previous = _decide
    _decide = decide
    try:
        yield
    finally:
        _decide = previous
