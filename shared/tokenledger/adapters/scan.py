"""Reads for the reconciliation: parallel scans streamed page by page, and exact per-account reads.

`parallel_scan` runs one thread per segment (`Segment`/`TotalSegments`, bounded by
`SCAN_THREADS_MAX`) and hands pages to the caller through a bounded queue: at most
`SCAN_QUEUE_PAGES_MAX` pages wait in memory, whatever the table's size. A segment's pages
arrive in the order DynamoDB returns them; pages of different segments interleave.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tokenledger.adapters.dynamodb import AttributeMap, account_from_item, batch_get, entry_from_item, read_account
from tokenledger.domain.model import Account, Entry
from tokenledger.service.reconcile.ports import (
    LOOKUP_BATCH_MAX,
    IdempotencyRecord,
    PaymentRecord,
    StripeEventSeen,
)

SCAN_TOTAL_SEGMENTS_MAX = 1_000_000  # DynamoDB's own limit on TotalSegments
SCAN_THREADS_MAX = 16
SCAN_PAGE_ITEMS_MAX = 1_000  # Limit per Scan request (a page is also capped at 1 MB by DynamoDB)
SCAN_QUEUE_PAGES_MAX = 8
SCAN_PUT_WAIT_S = 0.5
CHAIN_PAGE_ITEMS = 500

_DONE = object()


def parallel_scan(
    client: Any,
    *,
    table: str,
    segments: Sequence[int],
    total_segments: int,
    page_items_max: int = SCAN_PAGE_ITEMS_MAX,
    threads_max: int = SCAN_THREADS_MAX,
    consistent_read: bool = False,
    projection: str | None = None,
    expression_names: dict[str, str] | None = None,
) -> Iterator[list[AttributeMap]]:
    """Pages of raw items from `segments` of a `total_segments`-way parallel scan, as they arrive.

    Lazy: no request is sent before the first page is asked for. Closing the iterator early
    stops the workers after their current request. A worker's error is raised here.
    """
    if not 1 <= total_segments <= SCAN_TOTAL_SEGMENTS_MAX:
        raise ValueError(f"total_segments must be 1..{SCAN_TOTAL_SEGMENTS_MAX}")
    if any(not 0 <= s < total_segments for s in segments):
        raise ValueError("every segment must be in 0..total_segments-1")
    pages: queue.Queue[Any] = queue.Queue(maxsize=SCAN_QUEUE_PAGES_MAX)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=SCAN_PUT_WAIT_S)
                return True
            except queue.Full:
                continue
        return False

    def scan_segment(segment: int) -> None:
        request: dict[str, Any] = {
            "TableName": table,
            "Segment": segment,
            "TotalSegments": total_segments,
            "Limit": page_items_max,
            "ConsistentRead": consistent_read,
        }
        if projection is not None:
            request["ProjectionExpression"] = projection
        if expression_names:
            request["ExpressionAttributeNames"] = expression_names
        while not stop.is_set():
            response = client.scan(**request)
            if not put(response.get("Items", [])):
                return
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            request["ExclusiveStartKey"] = last_key

    def worker(segment: int) -> None:
        try:
            scan_segment(segment)
        except BaseException as error:  # handed to the consumer, which raises it
            put(error)

    def run_all() -> None:
        with ThreadPoolExecutor(max_workers=max(1, min(threads_max, len(segments)))) as pool:
            list(pool.map(worker, segments))
        put(_DONE)

    if not segments:
        return
    runner = threading.Thread(target=run_all, name=f"scan-{table}", daemon=True)
    runner.start()
    try:
        while True:
            item = pages.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        runner.join(timeout=30)


def accounts_of(pages: Iterator[list[AttributeMap]]) -> Iterator[list[Account]]:
    for page in pages:
        yield [account_from_item(item) for item in page]


def entries_of(pages: Iterator[list[AttributeMap]]) -> Iterator[list[Entry]]:
    for page in pages:
        yield [entry_from_item(item) for item in page]


def entry_refs_of(body: Any) -> tuple[tuple[str, int, str], ...]:
    """The entries a stored response names: `{entry: Entry}` or `{entries: [Entry]}`."""
    if not isinstance(body, dict):
        return ()
    found = []
    listed = body.get("entries")
    candidates: list[Any] = [body.get("entry"), *(listed if isinstance(listed, list) else [])]
    for entry in candidates:
        if isinstance(entry, dict) and {"user_id", "seq", "entry_id"} <= entry.keys():
            found.append((str(entry["user_id"]), int(entry["seq"]), str(entry["entry_id"])))
    return tuple(found)


def idempotency_records_of(pages: Iterator[list[AttributeMap]]) -> Iterator[list[IdempotencyRecord]]:
    """Idempotency items with a stored response; guards, repair records and payments are skipped."""
    for page in pages:
        records = []
        for item in page:
            raw = item.get("response", {}).get("S")
            if raw is None:
                continue
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
            records.append(IdempotencyRecord(pk=item["pk"]["S"], entry_refs=entry_refs_of(body)))
        yield records


# ---------------------------------------------------------------------- exact reads
class DynamoAuditReads:
    """`AccountProbe` and `EntryIndex` on the accounts and entries tables (strongly consistent)."""

    def __init__(
        self,
        client: Any,
        *,
        accounts_table: str,
        entries_table: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.accounts_table = accounts_table
        self.entries_table = entries_table
        self._sleep = sleep

    def get_account(self, user_id: str) -> Account | None:
        return read_account(self.client, self.accounts_table, user_id)

    def iter_chain(self, user_id: str) -> Iterator[Entry]:
        request: dict[str, Any] = {
            "TableName": self.entries_table,
            "KeyConditionExpression": "user_id = :u",
            "ExpressionAttributeValues": {":u": {"S": user_id}},
            "ConsistentRead": True,
            "ScanIndexForward": True,
            "Limit": CHAIN_PAGE_ITEMS,
        }
        while True:
            response = self.client.query(**request)
            for item in response.get("Items", []):
                yield entry_from_item(item)
            last_key = response.get("LastEvaluatedKey")
            if not last_key:
                return
            request["ExclusiveStartKey"] = last_key

    def entry_ids_at(self, keys: Sequence[tuple[str, int]]) -> dict[tuple[str, int], str]:
        if len(keys) > LOOKUP_BATCH_MAX:
            raise ValueError(f"at most {LOOKUP_BATCH_MAX} keys per lookup")
        items = batch_get(
            self.client,
            self.entries_table,
            [{"user_id": {"S": u}, "seq": {"N": str(s)}} for u, s in keys],
            projection="user_id, seq, entry_id",
            sleep=self._sleep,
        )
        return {(i["user_id"]["S"], int(i["seq"]["N"])): i["entry_id"]["S"] for i in items}


def payment_record_of(item: AttributeMap) -> PaymentRecord | None:
    """A Stripe events table item (docs/stripe.md) reduced to what the audit compares."""
    if "event_id" not in item or "outcome" not in item:
        return None

    def text(name: str) -> str | None:
        value = item.get(name, {}).get("S")
        return str(value) if value is not None else None

    entry_ref = None
    user_id, entry_id, seq = text("user_id"), text("entry_id"), item.get("entry_seq", {}).get("N")
    if user_id and entry_id and seq is not None:
        entry_ref = (user_id, int(seq), entry_id)
    return PaymentRecord(
        event_id=item["event_id"]["S"],
        outcome=item["outcome"]["S"],
        payment_id=text("payment_id"),
        user_id=user_id,
        entry_ref=entry_ref,
    )


def payment_records_of(pages: Iterator[list[AttributeMap]]) -> Iterator[list[PaymentRecord]]:
    for page in pages:
        yield [r for r in (payment_record_of(item) for item in page) if r is not None]


class StripePayments:
    """`PaymentIndex` over the Stripe events table (one item per processed event) and the entries."""

    def __init__(
        self,
        client: Any,
        *,
        events_table: str,
        entries_table: str,
        idempotency_table: str | None = None,
        purchase_record_pk: Callable[[str], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.events_table = events_table
        self.entries_table = entries_table
        self.idempotency_table = idempotency_table
        self.purchase_record_pk = purchase_record_pk  # the key the service gives a payment's exactly-once record
        self._sleep = sleep

    def stripe_events(self, event_ids: Sequence[str]) -> dict[str, StripeEventSeen]:
        if len(event_ids) > LOOKUP_BATCH_MAX:
            raise ValueError(f"at most {LOOKUP_BATCH_MAX} ids per lookup")
        items = batch_get(
            self.client,
            self.events_table,
            [{"event_id": {"S": e}} for e in event_ids],
            projection="event_id, payment_id, outcome",
            sleep=self._sleep,
        )
        return {
            i["event_id"]["S"]: StripeEventSeen(
                payment_id=i.get("payment_id", {}).get("S"), outcome=i.get("outcome", {}).get("S", "")
            )
            for i in items
        }

    def purchased_payments(self, payment_ids: Sequence[str]) -> set[str]:
        """Payments with a purchase: their exactly-once records, one BatchGetItem per 100 payments.

        Never the `by-related-id` index: related ids are the users' words, and a user's own
        entries named after a payment must not hide (or fake) its purchase.
        """
        if self.idempotency_table is None or self.purchase_record_pk is None:
            raise ValueError("purchased_payments needs the idempotency table and its purchase record key")
        by_pk = {self.purchase_record_pk(p): p for p in payment_ids}
        found: set[str] = set()
        pks = list(by_pk)
        for start in range(0, len(pks), LOOKUP_BATCH_MAX):
            items = batch_get(
                self.client,
                self.idempotency_table,
                [{"pk": {"S": pk}} for pk in pks[start : start + LOOKUP_BATCH_MAX]],
                projection="pk",
                sleep=self._sleep,
            )
            found.update(by_pk[i["pk"]["S"]] for i in items if i.get("pk", {}).get("S") in by_pk)
        return found


# ---------------------------------------------------------------------- the tables as page streams
class DynamoLedgerPages:
    """`LedgerPages` on the template's tables (eventually consistent scans, half the read cost)."""

    def __init__(
        self,
        client: Any,
        *,
        accounts_table: str,
        entries_table: str,
        idempotency_table: str,
        stripe_events_table: str | None,
        page_items_max: int = SCAN_PAGE_ITEMS_MAX,
        threads_max: int = SCAN_THREADS_MAX,
    ) -> None:
        self.client = client
        self.accounts_table = accounts_table
        self.entries_table = entries_table
        self.idempotency_table = idempotency_table
        self.stripe_events_table = stripe_events_table
        self.page_items_max = page_items_max
        self.threads_max = threads_max

    def _scan(self, table: str, start: int, end: int, total: int, **options: Any) -> Iterator[list[AttributeMap]]:
        return parallel_scan(
            self.client,
            table=table,
            segments=range(start, end),
            total_segments=total,
            page_items_max=self.page_items_max,
            threads_max=self.threads_max,
            **options,
        )

    def account_pages(self, start: int, end: int, total: int) -> Iterator[list[Account]]:
        return accounts_of(self._scan(self.accounts_table, start, end, total))

    def entry_pages(self, start: int, end: int, total: int) -> Iterator[list[Entry]]:
        return entries_of(self._scan(self.entries_table, start, end, total))

    def idempotency_pages(self, start: int, end: int, total: int) -> Iterator[list[IdempotencyRecord]]:
        # Only the key and the stored response: guards and TTL bookkeeping are not read back.
        return idempotency_records_of(
            self._scan(
                self.idempotency_table, start, end, total, projection="pk, #r", expression_names={"#r": "response"}
            )
        )

    def payment_pages(self, start: int, end: int, total: int) -> Iterator[list[PaymentRecord]] | None:
        if self.stripe_events_table is None:
            return None
        return payment_records_of(self._scan(self.stripe_events_table, start, end, total))


SETTLEMENT_FIELDS = ("prediction_id", "settlement_id", "outcome", "status", "taken_in", "house_contribution")


def settlement_records(client: Any, *, table: str, total_segments: int) -> Iterator[dict[str, Any]]:
    """Every settlement item of the predictions table (parallel scan; other items come back as keys only)."""
    names = {f"#f{i}": name for i, name in enumerate(SETTLEMENT_FIELDS)}
    for page in parallel_scan(
        client,
        table=table,
        segments=range(total_segments),
        total_segments=total_segments,
        projection="pk, sk, " + ", ".join(names),
        expression_names=names,
    ):
        for item in page:
            if item.get("sk", {}).get("S") != "settlement":
                continue
            record: dict[str, Any] = {}
            for name in SETTLEMENT_FIELDS:
                value = item.get(name)
                if value is not None:
                    record[name] = int(value["N"]) if "N" in value else value.get("S")
            yield record
