"""Outbound events: what the ledger tells the outside world, decided from data alone (no I/O).

Every event is published to the stack's EventBridge bus with source ``tokenledger``
(docs/events.md). Each one carries a stable id for deduplication: the entry id for
``Entry Created``, a derived ``event_id`` for the others, the same on every redelivery.

- ``Entry Created``: detail is the Entry exactly as the API returns it.
- ``Balance Low``: the entry took the balance from at or above the threshold to below it.
  The balance before is ``balance_after - amount``: the entry alone decides it, so replaying a
  stream record decides the same way.
- ``Chargeback Unrecovered``: a chargeback could not take back every token.
- ``Reconciliation Completed`` and ``Settlement Completed``: published by those runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tokenledger.service.ports import OutboundEvent
from tokenledger.service.prediction_keys import SETTLEMENT_SK

DETAIL_ENTRY_CREATED = "Entry Created"
DETAIL_BALANCE_LOW = "Balance Low"
DETAIL_CHARGEBACK_UNRECOVERED = "Chargeback Unrecovered"
DETAIL_RECONCILIATION_COMPLETED = "Reconciliation Completed"
DETAIL_SETTLEMENT_COMPLETED = "Settlement Completed"
DETAIL_TYPES = (
    DETAIL_ENTRY_CREATED,
    DETAIL_BALANCE_LOW,
    DETAIL_CHARGEBACK_UNRECOVERED,
    DETAIL_RECONCILIATION_COMPLETED,
    DETAIL_SETTLEMENT_COMPLETED,
)
# The report fields a `Reconciliation Completed` event carries (counts, not findings: the
# report itself, with user ids and details, stays in the reports bucket).
RECONCILIATION_FIELDS = (
    "run_id",
    "started_at",
    "finished_at",
    "accounts_checked",
    "entries_checked",
    "tokens_outstanding",
    "unrecovered_chargebacks",
    "healthy",
    "snapshot_key",
)
SETTLEMENT_FIELDS = (
    "settlement_id",
    "prediction_id",
    "status",
    "outcome",
    "payouts_total",
    "paid_total",
    "entries_written",
    "taken_in",
    "house_contribution",
    "created_at",
    "completed_at",
)


def entry_events(entry: Mapping[str, Any], *, low_balance_tokens: int) -> list[OutboundEvent]:
    """The events one new entry (the API's Entry shape) gives rise to, in publishing order."""
    entry_id = str(entry["entry_id"])
    user_id = str(entry["user_id"])
    seq = int(entry["seq"])
    created_at = str(entry["created_at"])
    amount = int(entry["amount"])
    balance_after = int(entry["balance_after"])
    events = [
        OutboundEvent(DETAIL_ENTRY_CREATED, dict(entry), entry_id, created_at, user_id, seq),
    ]
    balance_before = balance_after - amount
    if balance_after < low_balance_tokens <= balance_before:
        events.append(
            OutboundEvent(
                DETAIL_BALANCE_LOW,
                {
                    "event_id": f"{entry_id}:balance-low",
                    "user_id": user_id,
                    "entry_id": entry_id,
                    "seq": seq,
                    "type": entry["type"],
                    "balance_before": balance_before,
                    "balance": balance_after,
                    "threshold": low_balance_tokens,
                    "created_at": created_at,
                },
                f"{entry_id}:balance-low",
                created_at,
                user_id,
                seq,
            )
        )
    unrecovered = entry.get("unrecovered")
    if entry["type"] == "chargeback" and isinstance(unrecovered, int) and unrecovered > 0:
        events.append(
            OutboundEvent(
                DETAIL_CHARGEBACK_UNRECOVERED,
                {
                    "event_id": f"{entry_id}:chargeback-unrecovered",
                    "user_id": user_id,
                    "entry_id": entry_id,
                    "seq": seq,
                    "related_id": entry.get("related_id"),
                    "recovered": -amount,
                    "unrecovered": unrecovered,
                    "balance_after": balance_after,
                    "created_at": created_at,
                },
                f"{entry_id}:chargeback-unrecovered",
                created_at,
                user_id,
                seq,
            )
        )
    return events


def reconciliation_event(report: Mapping[str, Any]) -> OutboundEvent:
    """`Reconciliation Completed`: the report's counts and `healthy`, keyed by its run id."""
    detail = {name: report.get(name) for name in RECONCILIATION_FIELDS}
    event_id = f"reconciliation:{report['run_id']}"
    detail["event_id"] = event_id
    detail["inconsistencies"] = len(report.get("inconsistencies") or [])
    return OutboundEvent(DETAIL_RECONCILIATION_COMPLETED, detail, event_id, report.get("finished_at") or None)


def settlement_completed_events(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[OutboundEvent]:
    """`Settlement Completed` for the settlement item's change into `completed`, else nothing.

    The fact is the settlement item (predictions table, sort key `settlement`) moving from any
    other status to `completed`: exactly one stream record per settlement, whatever progress
    updates came before it. `old` and `new` are the record's images as plain values.
    """
    if new.get("sk") != SETTLEMENT_SK or new.get("status") != "completed" or old.get("status") == "completed":
        return []
    return [settlement_event(new)]


def settlement_event(settlement: Mapping[str, Any]) -> OutboundEvent:
    """`Settlement Completed`: a prediction's settlement finished, keyed by its settlement id."""
    detail = {name: settlement.get(name) for name in SETTLEMENT_FIELDS}
    event_id = f"settlement:{settlement['settlement_id']}"
    detail["event_id"] = event_id
    return OutboundEvent(DETAIL_SETTLEMENT_COMPLETED, detail, event_id, settlement.get("completed_at") or None)
