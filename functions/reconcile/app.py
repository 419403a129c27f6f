"""Reconciliation: the scheduled full-ledger audit, in one invocation or as one step of a fan-out.

The event decides the step (docs/reconciliation.md):

- an EventBridge scheduled event (or `{}`): the whole run here, all segments in parallel threads;
- `{"action": "plan", "ranges": n}`: a run id and the segment ranges, for ReconcileStateMachine;
- `{"action": "audit", "run_id", "start", "end", "total_segments"}`: one range, stored as a part;
- `{"action": "merge", "run_id", "started_at", "ranges"}`: the parts into the published report.

Findings are data (in the report, the metrics and the IntegrityFindings alarm), never an
error: the function fails only when the audit itself could not be done, or when the bus did
not accept its `Reconciliation Completed` event (docs/events.md), which the run's retry
publishes again.
"""

from __future__ import annotations

import tokenledger.coldstart  # isort: skip - first: it trims what the imports below load

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from tokenledger import bootstrap
from tokenledger.observability import make_tracer
from tokenledger.service.events import reconciliation_event
from tokenledger.service.reconcile.findings import NOTICE_KINDS

logger = Logger()
tracer = make_tracer()
metrics = Metrics()
settings = bootstrap.Settings.from_env()
wiring = bootstrap.build_audit(settings)
run = wiring.reconcile_run()
publisher = bootstrap.build_publisher(settings)


def _publish_metrics(report: dict[str, Any]) -> None:
    by_kind: dict[str, int] = report.get("findings_by_kind", {})
    integrity = sum(n for kind, n in by_kind.items() if kind not in NOTICE_KINDS)
    metrics.add_metric(name="AccountsChecked", unit=MetricUnit.Count, value=report["accounts_checked"])
    metrics.add_metric(name="EntriesChecked", unit=MetricUnit.Count, value=report["entries_checked"])
    metrics.add_metric(name="Findings", unit=MetricUnit.Count, value=sum(by_kind.values()))
    metrics.add_metric(name="IntegrityFindings", unit=MetricUnit.Count, value=integrity)
    metrics.add_metric(name="TokensOutstanding", unit=MetricUnit.Count, value=report["tokens_outstanding"])
    metrics.add_metric(name="UnrecoveredChargebacks", unit=MetricUnit.Count, value=report["unrecovered_chargebacks"])
    logger.info(
        "reconciliation finished",
        extra={
            "run_id": report["run_id"],
            "healthy": report["healthy"],
            "accounts_checked": report["accounts_checked"],
            "entries_checked": report["entries_checked"],
            "findings_by_kind": by_kind,
        },
    )


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    action = event.get("action") if isinstance(event, dict) else None
    segments = wiring.settings.reconcile_segments
    if action == "plan":
        metrics.add_metric(name="FanOutRunsPlanned", unit=MetricUnit.Count, value=1)
        return run.plan(total_segments=segments, ranges=int(event.get("ranges", 1)))
    if action == "audit":
        part = run.audit_range(
            run_id=str(event["run_id"]),
            start=int(event["start"]),
            end=int(event["end"]),
            total_segments=int(event["total_segments"]),
        )
        metrics.add_metric(name="FanOutRangesAudited", unit=MetricUnit.Count, value=1)
        return part
    if action == "merge":
        ranges = [(int(r["start"]), int(r["end"])) for r in event["ranges"]]
        report = run.merge(run_id=str(event["run_id"]), started_at=str(event["started_at"]), ranges=ranges)
    elif action is None:
        report = run.run(total_segments=segments)
    else:
        raise ValueError(f"unknown action {str(action)[:40]!r}")
    _publish_metrics(report)
    if publisher is not None:
        publisher.publish([reconciliation_event(report)])
    return report


tokenledger.coldstart.end_of_init()  # the last line: init is over (tokenledger/coldstart.py, 5.)
