"""Reconciliation: ``reconcile`` (a run now) and ``reports`` (``latest``, ``list``)."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import urlsplit

from infra.cli.core import Commands, whole_number
from infra.cli.errors import EXIT_INCONSISTENT, EXIT_OK, UsageError
from infra.cli.output import emit_json, table

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
LOCAL_RECONCILE_PATH = "/console/dev/reconcile"
RECONCILE_LOGICAL_ID = "ReconcileFunction"
REPORTS_LIST_MAX = 100
LAMBDA_READ_TIMEOUT_S = 910  # the function's Timeout is 900 s


def register(commands: Commands) -> None:
    p = commands.add(
        "reconcile",
        reconcile,
        help="run the reconciliation now, as the schedule does (exit 3 if the report is not healthy)",
        epilog="Locally (make run) the stack runs it at once. On AWS, --stack NAME invokes the stack's "
        "ReconcileFunction with your AWS credentials (lambda:InvokeFunction, cloudformation:DescribeStackResource).",
    )
    p.add_argument("--stack", help="a deployed stack's name (e.g. tokenledger-dev): invoke its function on AWS")
    p.add_argument(
        "--no-wait", action="store_true", help="with --stack: start the run and return (read it with reports latest)"
    )

    p = commands.add("reports", reports_latest, help="admin: reconciliation reports (latest, or list)")
    views = commands.group(p, dest="view")
    views.add("latest", reports_latest, help="the latest report with its findings (the default)")
    listing = views.add("list", reports_list, help="past runs, newest first, without their findings")
    listing.add_argument(
        "--limit", type=whole_number(1, REPORTS_LIST_MAX), default=20, help=f"1..{REPORTS_LIST_MAX}, default 20"
    )


def print_report(report: dict[str, Any]) -> None:
    print(
        f"run {report['run_id']} ({report['started_at']} .. {report['finished_at']}): "
        f"{report['accounts_checked']} accounts, {report['entries_checked']} entries, "
        f"{report['tokens_outstanding']} tokens outstanding, "
        f"{report.get('unrecovered_chargebacks', 0)} unrecovered by chargebacks: "
        + ("healthy" if report["healthy"] else "NOT HEALTHY")
    )
    findings = report.get("inconsistencies") or []
    if findings:
        table(findings, ["user_id", "kind", "detail"])
    totals = {kind: amount for kind, amount in (report.get("totals_by_type") or {}).items() if amount}
    if totals:
        print("totals by type: " + ", ".join(f"{kind} {amount:+d}" for kind, amount in sorted(totals.items())))


def _done(args: argparse.Namespace, report: dict[str, Any]) -> int:
    if args.json:
        emit_json(report)
    else:
        print_report(report)
    return EXIT_OK if report.get("healthy") else EXIT_INCONSISTENT


def reconcile(args: argparse.Namespace) -> int:
    if args.stack:
        return _reconcile_on_aws(args)
    if urlsplit(args.url).hostname not in LOCAL_HOSTS:
        raise UsageError(f"{args.url} is not the local stack: pass --stack NAME to run it on AWS")
    return _done(args, args.client.request("POST", LOCAL_RECONCILE_PATH, authenticate=False).body)


def _reconcile_on_aws(args: argparse.Namespace) -> int:
    import json
    import os

    import boto3
    from botocore.config import Config

    # boto3 reads AWS_DEFAULT_REGION; the AWS CLI v2 also AWS_REGION.
    region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None
    session = boto3.session.Session(region_name=region)
    resource = session.client("cloudformation").describe_stack_resource(
        StackName=args.stack, LogicalResourceId=RECONCILE_LOGICAL_ID
    )
    function = resource["StackResourceDetail"]["PhysicalResourceId"]
    client = session.client("lambda", config=Config(read_timeout=LAMBDA_READ_TIMEOUT_S, retries={"max_attempts": 0}))
    if args.no_wait:
        client.invoke(FunctionName=function, InvocationType="Event", Payload=b"{}")
        print(f"started {function}; read the report with: tokenledger reports latest")
        return EXIT_OK
    answer = client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=b"{}")
    payload = json.loads(answer["Payload"].read() or b"null")
    if answer.get("FunctionError"):
        message = payload.get("errorMessage") if isinstance(payload, dict) else payload
        raise UsageError(f"{function} failed: {message}")
    return _done(args, payload)


def reports_latest(args: argparse.Namespace) -> int:
    return _done(args, args.client.request("GET", "/v1/admin/reports/latest", admin=True).body)


def reports_list(args: argparse.Namespace) -> int:
    body = args.client.request("GET", "/v1/admin/reports", admin=True, query={"limit": args.limit}).body
    if args.json:
        emit_json(body)
        return EXIT_OK
    rows = body["reports"]
    table(
        rows,
        ["run_id", "started_at", "accounts_checked", "entries_checked", "tokens_outstanding", "findings", "healthy"],
    )
    if not rows:
        print("(no reconciliation has run yet: tokenledger reconcile)")
    return EXIT_OK
