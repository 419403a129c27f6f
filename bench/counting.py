"""Count every DynamoDB call at the boto3 client and price it in capacity units.

`CallRecorder.install(session)` registers botocore event hooks on a boto3 session's event
system; every client created from that session afterwards carries them (botocore copies the
session's emitter into each client). Hooks:

- `before-parameter-build.dynamodb`: keeps the call's parameters, and when asked injects
  `ReturnConsumedCapacity=INDEXES` (the TOTAL figure plus its table/index breakdown) so an
  engine that reports real capacity (AWS, DynamoDB Local) can be compared with ours.
- `before-call.dynamodb`: reads the items a write will touch, as they are before it.
- `after-call.dynamodb`: reads them after, and prices the call by `bench.capacity`.

The before/after looks go through a separate "oracle" client on its own session, so they are
neither hooked nor counted. Only calls made inside `recorder.record()` (per thread) count.
"""

from __future__ import annotations

import contextlib
import copy
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.capacity import item_size, projected, read_units, write_units

WRITE_ACTIONS = ("Put", "Update", "Delete", "ConditionCheck")


@dataclass
class Call:
    """One DynamoDB request and what it costs."""

    operation: str
    error: str | None = None
    read_units: float = 0.0
    write_units: float = 0.0  # table writes, committed or refused (a refused condition is billed too)
    gsi_write_units: float = 0.0  # writes to global secondary indexes (committed writes only)
    items_written: int = 0  # items that changed (0 when the request was refused)
    approximate: bool = False  # a filter hid items we could not size
    reported: dict[str, float] | None = None  # the engine's ConsumedCapacity, when it sent one
    traits: set[str] = field(default_factory=set)  # what may make an engine's figure differ

    @property
    def computed(self) -> float:
        return self.read_units + self.write_units + self.gsi_write_units


@dataclass
class Tally:
    """The calls of one measured operation."""

    calls: list[Call] = field(default_factory=list)

    @property
    def round_trips(self) -> int:
        return len(self.calls)

    def total(self, name: str) -> float:
        return round(sum(getattr(c, name) for c in self.calls), 3)

    def reported_total(self) -> float | None:
        """Sum of the engine's figures, None when no call carried one."""
        figures = [c.reported.get("total", 0.0) for c in self.calls if c.reported is not None]
        return round(sum(figures), 3) if figures else None

    def engine_comparison(self) -> dict[str, Any]:
        """Our units beside the engine's ConsumedCapacity, call by call, with the reason for any gap."""
        rows = []
        for call in self.calls:
            reported = call.reported["total"] if call.reported is not None else None
            agree = reported is not None and abs(reported - call.computed) < 0.001
            row: dict[str, Any] = {
                "call": call.operation + (f"!{call.error}" if call.error else ""),
                "computed": round(call.computed, 3),
                "reported": reported,
                "agree": agree,
            }
            if not agree:
                row["why"] = sorted(_reasons(call)) or ["unexplained"]
            rows.append(row)
        return {"agree": all(r["agree"] for r in rows), "calls": rows}

    def operations(self) -> list[str]:
        return [c.operation + (f"!{c.error}" if c.error else "") for c in self.calls]

    def summary(self) -> dict[str, Any]:
        reported = self.reported_total()
        out: dict[str, Any] = {
            "round_trips": self.round_trips,
            "write_units": self.total("write_units"),
            "read_units": self.total("read_units"),
            "gsi_write_units": self.total("gsi_write_units"),
            "items_written": int(self.total("items_written")),
            "calls": self.operations(),
        }
        if reported is not None:
            out["reported_units"] = reported
            out["engine"] = self.engine_comparison()
        if any(c.approximate for c in self.calls):
            out["approximate"] = True
        return out


class CallRecorder:
    def __init__(self, oracle: Any, *, report_capacity: bool = False) -> None:
        self.oracle = oracle
        self.report_capacity = report_capacity
        self._local = threading.local()
        self._everywhere: Tally | None = None
        self._lock = threading.Lock()
        self._schemas: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ wiring
    def install(self, session: Any) -> None:
        """Hook a boto3 Session (e.g. boto3's default session) before its clients are created."""
        events = session.events
        events.register("before-parameter-build.dynamodb", self._before_parameters, unique_id="bench-params")
        events.register("before-call.dynamodb", self._before_call, unique_id="bench-before")
        events.register("after-call.dynamodb", self._after_call, unique_id="bench-after")

    @contextlib.contextmanager
    def record(self, *, all_threads: bool = False) -> Iterator[Tally]:
        """Count this thread's calls (or every thread's, for handlers that fan out) until exit."""
        tally = Tally()
        if all_threads:
            self._everywhere = tally
            try:
                yield tally
            finally:
                self._everywhere = None
            return
        previous = getattr(self._local, "tally", None)
        self._local.tally = tally
        try:
            yield tally
        finally:
            self._local.tally = previous

    @property
    def _active(self) -> Tally | None:
        tally: Tally | None = getattr(self._local, "tally", None)
        return tally or self._everywhere

    # ------------------------------------------------------------------ tables
    def _schema(self, table: str) -> dict[str, Any]:
        if table not in self._schemas:
            description = self.oracle.describe_table(TableName=table)["Table"]
            self._schemas[table] = {
                "keys": [k["AttributeName"] for k in description["KeySchema"]],
                "gsis": description.get("GlobalSecondaryIndexes", []),
            }
        return self._schemas[table]

    def _key_of(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self._schema(table)["keys"]}

    def _look(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.oracle.get_item(TableName=table, Key=key, ConsistentRead=True).get("Item")
        return found

    # ------------------------------------------------------------------ hooks
    def _before_parameters(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        if self._active is None:
            return
        if self.report_capacity and "ReturnConsumedCapacity" in model.input_shape.members:
            params["ReturnConsumedCapacity"] = "INDEXES"
        context["bench_params"] = copy.deepcopy(params)

    def _writes_of(self, operation: str, params: dict[str, Any]) -> list[tuple[str, str, dict[str, Any], Any]]:
        """(action, table, key, new item or None) for every item a write request touches."""
        touched: list[tuple[str, str, dict[str, Any], Any]] = []
        if operation == "PutItem":
            table = params["TableName"]
            touched.append(("Put", table, self._key_of(table, params["Item"]), params["Item"]))
        elif operation in ("UpdateItem", "DeleteItem"):
            touched.append((operation[:-4], params["TableName"], params["Key"], None))
        elif operation == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((action, spec),) = entry.items()
                table = spec["TableName"]
                if action == "Put":
                    touched.append(("Put", table, self._key_of(table, spec["Item"]), spec["Item"]))
                else:
                    touched.append((action, table, spec["Key"], None))
        elif operation == "BatchWriteItem":
            for table, requests in params["RequestItems"].items():
                for request in requests:
                    if "PutRequest" in request:
                        item = request["PutRequest"]["Item"]
                        touched.append(("Put", table, self._key_of(table, item), item))
                    else:
                        touched.append(("Delete", table, request["DeleteRequest"]["Key"], None))
        return touched

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        if self._active is None or "bench_params" not in context:
            return
        touched = self._writes_of(model.name, context["bench_params"])
        context["bench_before"] = [self._look(table, key) for _, table, key, _ in touched]

    def _after_call(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        tally = self._active
        if tally is None or "bench_params" not in context:
            return
        params = context["bench_params"]
        error = (parsed.get("Error") or {}).get("Code")
        call = Call(operation=model.name, error=error)
        self._price_reads(call, model.name, params, parsed)
        self._price_writes(call, model.name, params, context.get("bench_before", []))
        if self.report_capacity:
            call.reported = _reported(parsed.get("ConsumedCapacity"))
        with self._lock:
            tally.calls.append(call)

    # ------------------------------------------------------------------ pricing
    def _price_reads(self, call: Call, operation: str, params: dict[str, Any], parsed: dict[str, Any]) -> None:
        if call.error:
            return
        consistent = bool(params.get("ConsistentRead"))
        if operation == "GetItem":
            item = parsed.get("Item")
            if "ProjectionExpression" in params:
                item = self._look(params["TableName"], params["Key"])
            call.read_units = read_units(item_size(item), consistent=consistent)
        elif operation == "BatchGetItem":
            for table, spec in params["RequestItems"].items():
                returned = parsed.get("Responses", {}).get(table, [])
                unprocessed = len(parsed.get("UnprocessedKeys", {}).get(table, {}).get("Keys", []))
                missing = len(spec["Keys"]) - len(returned) - unprocessed
                tconsistent = bool(spec.get("ConsistentRead"))
                for found in returned:
                    item = self._look(table, self._key_of(table, found)) if "ProjectionExpression" in spec else found
                    call.read_units += read_units(item_size(item), consistent=tconsistent)
                call.read_units += missing * read_units(0, consistent=tconsistent)
                if missing:
                    call.traits.add("batch_get_missing_keys")
        elif operation in ("Query", "Scan"):
            items = parsed.get("Items", [])
            if "ProjectionExpression" in params and "IndexName" not in params:
                # Billed on whole items, not on the projected attributes returned.
                table = params["TableName"]
                items = [self._look(table, self._key_of(table, i)) or i for i in items]
            elif "ProjectionExpression" in params:
                call.approximate = True
            if parsed.get("ScannedCount", len(items)) != len(items):
                call.approximate = True
            call.read_units = read_units(sum(item_size(i) for i in items), consistent=consistent)
            if not items:
                call.traits.add("empty_read")
        elif operation == "TransactGetItems":
            for response in parsed.get("Responses", []):
                call.read_units += read_units(item_size(response.get("Item")), consistent=True, transactional=True)

    def _price_writes(self, call: Call, operation: str, params: dict[str, Any], before: list[Any]) -> None:
        touched = self._writes_of(operation, params)
        if not touched:
            return
        transactional = operation == "TransactWriteItems"
        refused = call.error is not None
        kinds = [(action, table) for action, table, _, _ in touched]
        if transactional and len(kinds) != len(set(kinds)):
            call.traits.add("several_items_per_table")
        for (action, table, key, new_item), old in zip(touched, before, strict=True):
            after = None if refused or action == "ConditionCheck" else self._look(table, key)
            attempted = new_item if refused and action == "Put" else after
            size = max(item_size(old), item_size(attempted))
            call.write_units += write_units(size, transactional=transactional)
            if refused or action == "ConditionCheck" or after == old:
                continue
            call.items_written += 1
            # Index writes of a transaction are transactional too (DynamoDB Local reports them doubled).
            call.gsi_write_units += self._gsi_units(table, old, after) * (2 if transactional else 1)

    def _gsi_units(self, table: str, old: Any, new: Any) -> float:
        """One index write per GSI whose projection changed (two when an index key moved)."""
        schema = self._schema(table)
        units = 0.0
        for index in schema["gsis"]:
            before = projected(old, table_keys=schema["keys"], index=index) if old else None
            after = projected(new, table_keys=schema["keys"], index=index) if new else None
            if before == after:
                continue
            index_keys = [k["AttributeName"] for k in index["KeySchema"]]
            moved = before is not None and after is not None and any(before[k] != after[k] for k in index_keys)
            if moved:
                units += write_units(item_size(before)) + write_units(item_size(after))
            else:
                units += write_units(max(item_size(before), item_size(after)))
        return units


DIFFERENCE_REASONS = {
    "empty_read": "DynamoDB Local charges nothing for a Query or Scan that reads no item; "
    "we charge the minimum unit per request (an upper bound)",
    "refused": "refused request: the engine sends no ConsumedCapacity with an error, "
    "we price it as a failed conditional write (AWS bills those)",
    "batch_get_missing_keys": "DynamoDB Local charges nothing for BatchGetItem keys that do not exist; "
    "we charge one read unit per key, as for a GetItem of a missing item",
    "several_items_per_table": "DynamoDB Local counts several actions of one kind on one table in a "
    "transaction (e.g. ten Puts into the entries table) as one; where each table has one action of a kind, "
    "its figure matches ours",
}


def _reasons(call: Call) -> set[str]:
    reasons = set(call.traits)
    if call.error:
        reasons.add("refused")
    return reasons


def _reported(consumed: Any) -> dict[str, float] | None:
    """The engine's ConsumedCapacity (one dict, or a list for batch/transact) summed."""
    if consumed is None:
        return None
    entries = consumed if isinstance(consumed, list) else [consumed]
    total = table = indexes = 0.0
    for entry in entries:
        total += float(entry.get("CapacityUnits", 0.0))
        table += float((entry.get("Table") or {}).get("CapacityUnits", 0.0))
        for index in (entry.get("GlobalSecondaryIndexes") or {}).values():
            indexes += float(index.get("CapacityUnits", 0.0))
    return {"total": round(total, 3), "table": round(table, 3), "gsi": round(indexes, 3)}
