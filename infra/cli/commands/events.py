"""Outbound events: ``events`` prints what the local stack's bus received; ``--follow`` as it happens.

Reads ``GET /_local/events`` of the local stack (``make run``): the bus exists in moto there.
A deployed stack's bus is followed with an EventBridge rule instead (docs/events.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from infra.cli.core import Commands, user_id, whole_number
from infra.cli.errors import EXIT_OK
from infra.cli.output import signed
from tokenledger.service.events import DETAIL_TYPES

EVENTS_PATH = "/_local/events"
WAIT_S = 10  # one long poll; the stack answers as soon as an event arrives


def register(commands: Commands) -> None:
    p = commands.add(
        "events", events, help="the local bus's events (Entry Created, Balance Low, ...); --follow as they happen"
    )
    p.add_argument("--follow", "-f", action="store_true", help="keep printing new events until Ctrl-C")
    p.add_argument("--user", type=user_id, help="only this user's events")
    p.add_argument(
        "--type", choices=DETAIL_TYPES, metavar="DETAIL_TYPE", help=f"only one of: {', '.join(DETAIL_TYPES)}"
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="with --follow: print the events already on the bus first (default: new only)",
    )
    p.add_argument("--max", type=whole_number(1, 1_000_000), help="stop after this many events (scripts, tests)")


def summary(event: dict[str, Any]) -> str:
    """One line a person reads: time, detail-type, user, and what happened."""
    detail = event.get("detail") or {}
    kind = event.get("detail-type", "")
    head = f"{event.get('time', '')[11:19]}  {kind:<24}"
    if kind == "Entry Created":
        what = f"{detail.get('type')} {signed(int(detail.get('amount', 0)))} -> {detail.get('balance_after')}"
        return f"{head}  {detail.get('user_id')}  seq {detail.get('seq')}  {what}  {detail.get('entry_id')}"
    if kind == "Balance Low":
        return (
            f"{head}  {detail.get('user_id')}  seq {detail.get('seq')}  "
            f"{detail.get('balance_before')} -> {detail.get('balance')} (below {detail.get('threshold')})"
        )
    if kind == "Chargeback Unrecovered":
        lost = detail.get("unrecovered")
        return f"{head}  {detail.get('user_id')}  seq {detail.get('seq')}  {lost} tokens not recovered"
    if kind == "Reconciliation Completed":
        health = "healthy" if detail.get("healthy") else "NOT healthy"
        return f"{head}  run {detail.get('run_id')}  {detail.get('accounts_checked')} accounts  {health}"
    return f"{head}  {json.dumps(detail, sort_keys=True)[:200]}"


def events(args: argparse.Namespace, *, out: Callable[[str], None] | None = None) -> int:
    write = out or (lambda line: (sys.stdout.write(line + "\n"), sys.stdout.flush()))
    query: dict[str, Any] = {"user_id": args.user, "detail_type": args.type}
    after: str = "now" if args.follow and not args.all else "0"
    printed = 0
    while True:
        wait = WAIT_S if args.follow else 0
        body = args.client.request("GET", EVENTS_PATH, admin=True, query={**query, "after": after, "wait": wait}).body
        for event in body["events"]:
            write(json.dumps(event, sort_keys=True) if args.json else summary(event))
            printed += 1
            if args.max and printed >= args.max:
                return EXIT_OK
        after = str(body["next"])
        if not args.follow:
            if not printed and not args.json:
                write("(no events on the local bus yet)")
            return EXIT_OK
        if not body["events"]:
            time.sleep(0.05)  # an empty long poll came back early (the stack restarted?): don't spin
