"""The report of a run: what one range found (`PartialReport`), merged across ranges, and published.

Also the balance snapshot's line, which is the run's digest of head hashes (docs/reconciliation.md,
"The digest of head hashes").
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tokenledger.domain.model import Account, EntryType
from tokenledger.service.reconcile.findings import NOTICE_KINDS, Finding, FindingKind

FINDINGS_LISTED_MAX = 10_000  # findings listed in one report; all are counted in findings_by_kind
SETTLED_PREDICTIONS_LISTED_MAX = 10_000  # rows in one report (a report is one S3 object)


@dataclass
class PartialReport:
    """What one audit over a range of segments found; partial reports merge into the report."""

    accounts_checked: int = 0
    entries_checked: int = 0
    tokens_outstanding: int = 0
    totals_by_type: dict[str, int] = field(default_factory=lambda: {str(t): 0 for t in EntryType})
    unrecovered_chargebacks: int = 0
    findings: list[Finding] = field(default_factory=list)
    findings_by_kind: Counter[str] = field(default_factory=Counter)
    checks_skipped: list[str] = field(default_factory=list)
    exact_rechecks: int = 0  # accounts read again exactly (suspicion, concurrent writes, misaligned segments)
    # Per prediction (counterparty `prediction:<id>`): tokens paid out and refunded, from the entries.
    prediction_flows: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, finding: Finding) -> None:
        self.findings_by_kind[str(finding.kind)] += 1
        if len(self.findings) < FINDINGS_LISTED_MAX:
            self.findings.append(finding)

    def to_json(self) -> dict[str, Any]:
        return {
            "accounts_checked": self.accounts_checked,
            "entries_checked": self.entries_checked,
            "tokens_outstanding": self.tokens_outstanding,
            "totals_by_type": dict(self.totals_by_type),
            "unrecovered_chargebacks": self.unrecovered_chargebacks,
            "inconsistencies": [f.to_api() for f in self.findings],
            "findings_by_kind": dict(self.findings_by_kind),
            "checks_skipped": list(self.checks_skipped),
            "exact_rechecks": self.exact_rechecks,
            "prediction_flows": {k: dict(v) for k, v in self.prediction_flows.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PartialReport:
        part = cls(
            accounts_checked=int(data["accounts_checked"]),
            entries_checked=int(data["entries_checked"]),
            tokens_outstanding=int(data["tokens_outstanding"]),
            unrecovered_chargebacks=int(data["unrecovered_chargebacks"]),
            checks_skipped=list(data.get("checks_skipped", [])),
            exact_rechecks=int(data.get("exact_rechecks", 0)),
        )
        part.totals_by_type.update({k: int(v) for k, v in data["totals_by_type"].items()})
        part.findings = [Finding(f["user_id"], FindingKind(f["kind"]), f["detail"]) for f in data["inconsistencies"]]
        part.findings_by_kind = Counter({k: int(v) for k, v in data.get("findings_by_kind", {}).items()})
        part.prediction_flows = {
            k: {kind: int(n) for kind, n in v.items()} for k, v in data.get("prediction_flows", {}).items()
        }
        return part

    def merge(self, other: PartialReport) -> None:
        self.accounts_checked += other.accounts_checked
        self.entries_checked += other.entries_checked
        self.tokens_outstanding += other.tokens_outstanding
        self.unrecovered_chargebacks += other.unrecovered_chargebacks
        self.exact_rechecks += other.exact_rechecks
        for kind, total in other.totals_by_type.items():
            self.totals_by_type[kind] = self.totals_by_type.get(kind, 0) + total
        seen = {(f.user_id, f.kind, f.detail) for f in self.findings}
        for finding in other.findings:
            if (finding.user_id, finding.kind, finding.detail) not in seen and len(self.findings) < FINDINGS_LISTED_MAX:
                self.findings.append(finding)
        self.findings_by_kind.update(other.findings_by_kind)
        self.checks_skipped = sorted(set(self.checks_skipped) | set(other.checks_skipped))
        for prediction_id, flows in other.prediction_flows.items():
            mine = self.prediction_flows.setdefault(prediction_id, {"paid_out": 0, "refunded": 0})
            for kind, tokens in flows.items():
                mine[kind] = mine.get(kind, 0) + tokens

    @property
    def healthy(self) -> bool:
        return not any(kind not in NOTICE_KINDS for kind, n in self.findings_by_kind.items() if n)


def settled_predictions(part: PartialReport, settlements: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per settled prediction: taken in, paid out, refunded, house contribution; overpayment is a finding.

    Taken in and the house contribution come from the settlement item (the stakes summed after
    the close, when nothing can change them any more); paid out and refunded from the entries
    scanned in this run (up to each account's cut), so a settlement still running is partial.
    """
    rows = []
    for record in settlements:
        prediction_id = str(record["prediction_id"])
        flows = part.prediction_flows.get(prediction_id, {})
        row: dict[str, Any] = {
            "prediction_id": prediction_id,
            "settlement_id": record.get("settlement_id"),
            "outcome": record.get("outcome"),
            "status": record.get("status"),
            "taken_in": int(record.get("taken_in", 0)),
            "house_contribution": int(record.get("house_contribution", 0)),
            "paid_out": int(flows.get("paid_out", 0)),
            "refunded": int(flows.get("refunded", 0)),
        }
        covered = row["taken_in"] + row["house_contribution"]
        row["overpaid"] = row["paid_out"] + row["refunded"] > covered
        if row["overpaid"]:
            part.add(
                Finding(
                    f"prediction:{prediction_id}",
                    FindingKind.PREDICTION_OVERPAID,
                    f"paid out {row['paid_out']} and refunded {row['refunded']}, but took in {row['taken_in']}"
                    f" and the house contributed {row['house_contribution']}",
                )
            )
        rows.append(row)
        if len(rows) >= SETTLED_PREDICTIONS_LISTED_MAX:
            break
    return sorted(rows, key=lambda r: r["prediction_id"])


def build_report(
    part: PartialReport, *, run_id: str, started_at: str, finished_at: str, snapshot_key: str
) -> dict[str, Any]:
    """The contract's report shape (plus `findings_by_kind` and `checks_skipped`)."""
    body = part.to_json()
    return {
        "run_id": run_id,
        "started_at": started_at,
        "finished_at": finished_at,
        "accounts_checked": body["accounts_checked"],
        "entries_checked": body["entries_checked"],
        "tokens_outstanding": body["tokens_outstanding"],
        "totals_by_type": body["totals_by_type"],
        "inconsistencies": body["inconsistencies"],
        "unrecovered_chargebacks": body["unrecovered_chargebacks"],
        "healthy": part.healthy,
        "snapshot_key": snapshot_key,
        "findings_by_kind": body["findings_by_kind"],
        "checks_skipped": body["checks_skipped"],
        "exact_rechecks": body["exact_rechecks"],
    }


def snapshot_line(account: Account) -> str:
    """One JSON Lines record of the balance snapshot, which is also the run's digest of head hashes."""
    return json.dumps(
        {
            "user_id": account.user_id,
            "balance": account.balance,
            "version": account.version,
            "head_hash": account.head_hash,
        },
        separators=(",", ":"),
    )
