"""The chaos run's outbound events: the stream consumer runs through the workload with faults at EventBridge.

While the clients write, the template's stream mapping (``infra.streams``) feeds the real
publisher function in the background, and its PutEvents calls fail at the run's fault rate:
whole calls (``ServiceUnavailable``, ``ThrottlingException``) and single entries
(``ThrottlingException``, ``InternalFailure``), decided by a generator seeded from the run's
seed, plus one outage of ``OUTAGE_CALLS`` refused calls in a row. After the workload the
consumer catches up (faults still on), and the check is the
contract's: every entry on the bus at least once, its detail the entry, and per user the
first publications in seq order 1, 2, 3 ... Nothing may sit in the on-failure destination.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections import Counter
from typing import Any

from infra.bus import BUS_LOG, FaultDecision, eventbridge_faults, install_bus_tap
from infra.chaos.report import Check
from infra.invariants import InvariantBroken, require
from infra.streams import StreamMapping, start_mappings, stream_mappings
from infra.template import Stack

CATCH_UP_S_MAX = 300.0
# An outage: after OUTAGE_AFTER_CALLS calls, EventBridge refuses OUTAGE_CALLS calls in a row, more
# than the publisher's attempts, so records fail and the mapping retries them (docs/events.md).
OUTAGE_AFTER_CALLS = 40
OUTAGE_CALLS = 25
WHOLE_CALL_FAULTS = ("ServiceUnavailable", "ThrottlingException")
ENTRY_FAULTS = ("ThrottlingException", "InternalFailure")
ENTRY_FIELDS = ("entry_id", "user_id", "seq", "type", "amount", "balance_after", "counterparty", "created_at")


class EventsUnderFaults:
    """Start with `start()` before the workload, `finish()` after it, then `check(entries)`."""

    def __init__(self, stack: Stack, engine: str, *, seed: int, fault_rate: float) -> None:
        self.stack = stack
        self.engine = engine
        self.rate = fault_rate
        self.rng = random.Random(f"{seed}:eventbridge")
        self.injected: Counter[str] = Counter()
        self.calls = 0
        self.mappings: list[StreamMapping] = []
        self._faults = contextlib.ExitStack()
        self._lock = threading.Lock()

    @staticmethod
    def declared(stack: Stack) -> bool:
        return bool(stream_mappings(stack))

    def decide(self, entries: list[dict[str, Any]]) -> FaultDecision:
        if not threading.current_thread().name.startswith("stream-"):
            return None  # only the stream consumer's calls (the reconciliation's event is checked elsewhere)
        with self._lock:
            self.calls += 1
            if OUTAGE_AFTER_CALLS < self.calls <= OUTAGE_AFTER_CALLS + OUTAGE_CALLS:
                self.injected["put_events_outage"] += 1
                return "ServiceUnavailable"
            roll = self.rng.random()
            if roll < self.rate / 2:
                code = self.rng.choice(WHOLE_CALL_FAULTS)
                self.injected[f"put_events_{code}"] += 1
                return code
            if roll < self.rate:
                codes: list[str | None] = [
                    self.rng.choice(ENTRY_FAULTS) if self.rng.random() < 0.5 else None for _ in entries
                ]
                codes[self.rng.randrange(len(codes))] = codes[0] or ENTRY_FAULTS[0]  # at least one
                self.injected["put_events_entry_failures"] += 1
                return codes
            return None

    def start(self) -> None:
        install_bus_tap()
        BUS_LOG.clear()
        self._faults.enter_context(eventbridge_faults(self.decide))
        reader = "moto" if self.engine == "moto" else "streams-api"
        self.mappings = start_mappings(self.stack, reader)
        for mapping in self.mappings:
            mapping.retry_delay_s = 0.01

    def finish(self) -> bool:
        """Let the consumer catch up with the stream (faults still on); then faults off. False on timeout."""
        caught_up = True
        for mapping in self.mappings:
            mapping.stop()
            mapping._thread = None
            mapping._stop.clear()
            caught_up = mapping.drain(timeout_s=CATCH_UP_S_MAX) and caught_up
        self._faults.close()
        return caught_up

    def check(self, entries: list[dict[str, Any]]) -> str:
        """Raises `InvariantBroken` (the chaos checks' convention) or says what held."""
        first: dict[str, dict[str, Any]] = {}
        order: dict[str, list[int]] = {}
        published = 0
        for event in BUS_LOG.of(detail_type="Entry Created"):
            detail = event["detail"]
            published += 1
            if detail["entry_id"] in first:
                continue
            first[detail["entry_id"]] = detail
            order.setdefault(detail["user_id"], []).append(int(detail["seq"]))
        missing = [e for e in entries if e["entry_id"] not in first]
        if missing:
            example = missing[0]
            raise InvariantBroken(
                f"{len(missing)} entries never published, e.g. {example['user_id']} seq {example['seq']}"
            )
        for entry in entries:
            detail = first[entry["entry_id"]]
            differs = [f for f in ENTRY_FIELDS if str(detail.get(f)) != str(entry.get(f))]
            require(not differs, f"entry {entry['entry_id']}: published {differs} differ from the table")
        for user, seqs in order.items():
            in_order = seqs == sorted(seqs) == list(range(1, len(seqs) + 1))
            require(in_order, f"{user}: first publications {seqs[:20]}")
        failed = [b for m in self.mappings for b in m.failed_batches]
        require(not failed, f"{len(failed)} batches went to the on-failure destination")
        retries = sum(m.retries for m in self.mappings)
        faults = sum(self.injected.values())
        return (
            f"{len(entries)} entries published ({published - len(first)} duplicates), per user in seq order, "
            f"through {faults} PutEvents faults and {retries} stream retries"
        )


def events_check(events: EventsUnderFaults, entries: list[dict[str, Any]], *, caught_up: bool) -> Check:
    """The `events_published_in_order` check of a run whose template declares the stream mapping."""
    name = "events_published_in_order"
    if not caught_up:
        return Check(name, False, "the stream consumer did not catch up with the stream")
    try:
        return Check(name, True, events.check(entries))
    except InvariantBroken as failed:
        return Check(name, False, str(failed))
