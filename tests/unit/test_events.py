"""Outbound event rules and the PutEvents retry loop, without AWS (docs/events.md)."""

from __future__ import annotations

from typing import Any

import pytest

from tokenledger.adapters.eventbridge import EventBridgePublisher
from tokenledger.service.events import (
    DETAIL_BALANCE_LOW,
    DETAIL_CHARGEBACK_UNRECOVERED,
    DETAIL_ENTRY_CREATED,
    entry_events,
)
from tokenledger.service.ports import OutboundEvent, PublishFailed


def entry(amount: int, balance_after: int, **extra: Any) -> dict[str, Any]:
    return {
        "entry_id": "e-1",
        "user_id": "u-1",
        "seq": 3,
        "type": "commitment" if amount < 0 else "grant",
        "amount": amount,
        "balance_after": balance_after,
        "counterparty": "prediction:p",
        "related_id": "p",
        "metadata": {},
        "created_at": "2026-12-01T10:00:00.000Z",
        "reverses": None,
        **extra,
    }


@pytest.mark.parametrize(
    ("amount", "balance_after", "low"),
    [
        (-10, 99, True),  # 109 -> 99 crosses 100
        (-10, 90, True),  # exactly at the threshold before: 100 -> 90
        (-10, 100, False),  # 110 -> 100: not below
        (-10, 50, False),  # already below before: 60 -> 50
        (10, 60, False),  # a credit never lowers
    ],
)
def test_balance_low_only_when_an_entry_crosses_below_the_threshold(amount: int, balance_after: int, low: bool) -> None:
    events = entry_events(entry(amount, balance_after), low_balance_tokens=100)
    assert events[0].detail_type == DETAIL_ENTRY_CREATED and events[0].detail == entry(amount, balance_after)
    assert (DETAIL_BALANCE_LOW in [e.detail_type for e in events]) is low


def test_unrecovered_chargeback_has_its_own_event_with_a_stable_id() -> None:
    chargeback = entry(-5, 0, type="chargeback", unrecovered=45)
    first = entry_events(chargeback, low_balance_tokens=1)
    again = entry_events(chargeback, low_balance_tokens=1)
    assert first == again  # a redelivered record gives the very same events (ids included)
    kinds = [e.detail_type for e in first]
    assert kinds == [DETAIL_ENTRY_CREATED, DETAIL_BALANCE_LOW, DETAIL_CHARGEBACK_UNRECOVERED]
    unrecovered = first[2].detail
    assert unrecovered["recovered"] == 5 and unrecovered["unrecovered"] == 45
    assert first[2].event_id == "e-1:chargeback-unrecovered" == unrecovered["event_id"]


class FakeEvents:
    """PutEvents answering from a script: per call, per entry, an error code or None."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[list[str]] = []

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append([e["DetailType"] for e in Entries])
        step = self.script.pop(0) if self.script else None
        if isinstance(step, Exception):
            raise step
        codes = step or [None] * len(Entries)
        results = [{"ErrorCode": c} if c else {"EventId": f"id-{i}"} for i, c in enumerate(codes)]
        return {"FailedEntryCount": sum(1 for c in codes if c), "Entries": results}


def events(n: int) -> list[OutboundEvent]:
    return [OutboundEvent(f"T{i}", {"i": i}, f"e{i}") for i in range(n)]


def test_only_the_refused_entries_are_sent_again() -> None:
    fake = FakeEvents([[None, "ThrottlingException", None], ["InternalFailure"], None])
    publisher = EventBridgePublisher(fake, "bus", sleep=lambda s: None)
    publisher.publish(events(3))
    assert fake.calls == [["T0", "T1", "T2"], ["T1"], ["T1"]]


def test_more_than_ten_events_go_in_chunks_of_ten_in_order() -> None:
    fake = FakeEvents([])
    EventBridgePublisher(fake, "bus", sleep=lambda s: None).publish(events(23))
    assert [len(c) for c in fake.calls] == [10, 10, 3] and fake.calls[2] == ["T20", "T21", "T22"]


def test_refused_after_every_attempt_raises_instead_of_dropping() -> None:
    from botocore.exceptions import EndpointConnectionError

    down = EndpointConnectionError(endpoint_url="https://events.us-east-1.amazonaws.com")
    fake = FakeEvents([down, ["ThrottlingException", None], down, down, down])
    slept: list[float] = []
    publisher = EventBridgePublisher(fake, "bus", attempts_max=5, sleep=slept.append)
    with pytest.raises(PublishFailed) as raised:
        publisher.publish(events(2))
    assert [e.event_id for e in raised.value.refused] == ["e0"]  # e1 was accepted on the second call
    assert len(fake.calls) == 5 and len(slept) == 4 and all(0 <= s <= 2 for s in slept)
