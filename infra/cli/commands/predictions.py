"""``close`` and ``settle``: end a prediction through the API (docs/admin.md).

    tokenledger close p-9
    tokenledger settle p-9 --payouts payouts.csv --reason "p-9 resolved YES" [--house-contribution 500]
    tokenledger settle p-9 --cancel --reason "p-9 voided"
    tokenledger settle p-9 --status            # the settlement's progress
    tokenledger settle p-9 ... --wait          # poll until it completes or fails

The payouts file is CSV with the header ``user_id,amount``, one line per user. The settlement
runs in the background; the Idempotency-Key defaults to a hash of the request, so the same
command run again answers the same settlement and moves nothing twice.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from infra.cli.client import path_part
from infra.cli.core import Commands, user_id
from infra.cli.errors import EXIT_REFUSED, UsageError
from infra.cli.output import emit_json

PAYOUT_LINES_MAX = 100_000
WAIT_POLL_S = 1.0
WAIT_S_MAX = 3600


def register(commands: Commands) -> None:
    p = commands.add("close", close, help="admin: close a prediction to new commitments")
    p.add_argument("prediction_id", type=user_id)

    p = commands.add("settle", settle, help="admin: settle a prediction (pay out or refund) in the background")
    p.add_argument("prediction_id", type=user_id)
    p.add_argument("--payouts", help="CSV with header user_id,amount (outcome resolved)")
    p.add_argument("--cancel", action="store_true", help="outcome cancelled: refund every commitment")
    p.add_argument("--reason", help="why (recorded on every entry)")
    p.add_argument("--house-contribution", type=int, default=0, help="tokens the house adds to the pool")
    p.add_argument("--key", help="Idempotency-Key (default: a hash of the request)")
    p.add_argument("--status", action="store_true", help="only show the settlement's progress")
    p.add_argument("--wait", action="store_true", help="poll until the settlement completes or fails")


def read_payouts(path: Path) -> list[dict[str, Any]]:
    """The payouts file as ``[{user_id, amount}]``, in file order; the API checks the plan again."""
    payouts: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if set(reader.fieldnames or ()) != {"user_id", "amount"}:
            raise UsageError(f"{path}: the header must be user_id,amount, not {reader.fieldnames}")
        for row in reader:
            if len(payouts) >= PAYOUT_LINES_MAX:
                raise UsageError(f"{path}: more than {PAYOUT_LINES_MAX} payouts")
            raw = (row.get("amount") or "").strip()
            if not re.fullmatch(r"[1-9][0-9]{0,9}", raw):
                raise UsageError(f"{path}:{reader.line_num}: amount must be a whole number of tokens, not {raw!r}")
            try:
                user = user_id((row.get("user_id") or "").strip())
            except argparse.ArgumentTypeError as error:
                raise UsageError(f"{path}:{reader.line_num}: {error}") from None
            payouts.append({"user_id": user, "amount": int(raw)})
    if not payouts:
        raise UsageError(f"{path}: no payouts")
    return payouts


def _path(prediction_id: str, tail: str) -> str:
    return f"/v1/admin/predictions/{path_part(prediction_id)}/{tail}"


def _show(args: argparse.Namespace, body: dict[str, Any]) -> None:
    if args.json:
        emit_json(body)
        return
    for key, value in body.items():
        print(f"{key}: {value}")


def close(args: argparse.Namespace) -> int:
    reply = args.client.request("POST", _path(args.prediction_id, "close"), admin=True)
    if args.json:
        emit_json(reply.body)
    else:
        print(f"closed {args.prediction_id} at {reply.body['closed_at']}")
    return 0


def settle(args: argparse.Namespace) -> int:
    client = args.client
    if args.status:
        body = client.request("GET", _path(args.prediction_id, "settlement"), admin=True).body
    else:
        if not args.reason:
            raise UsageError("--reason is required to settle")
        if args.cancel == bool(args.payouts):
            raise UsageError("pass either --payouts FILE (outcome resolved) or --cancel")
        request: dict[str, Any] = {"reason": args.reason, "outcome": "cancelled" if args.cancel else "resolved"}
        if args.payouts:
            request["payouts"] = read_payouts(Path(args.payouts))
        if args.house_contribution:
            request["house_contribution"] = args.house_contribution
        canonical = json.dumps({"prediction_id": args.prediction_id, **request}, sort_keys=True)
        key = args.key or "settle-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]
        body = client.request(
            "POST", _path(args.prediction_id, "settlement"), admin=True, body=request, headers={"Idempotency-Key": key}
        ).body
        if args.wait:
            body = _wait(client, args.prediction_id)
    _show(args, body)
    return EXIT_REFUSED if body.get("status") == "failed" else 0


def _wait(client: Any, prediction_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S_MAX
    while True:
        body: dict[str, Any] = client.request("GET", _path(prediction_id, "settlement"), admin=True).body
        print(
            f"settlement {body['settlement_id']}: {body['status']}, chunk {body['chunks_done']}/{body['chunks_total']},"
            f" paid {body['paid_total']} of {body['payouts_total']}",
            file=sys.stderr,
            flush=True,
        )
        if body["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(WAIT_POLL_S)
