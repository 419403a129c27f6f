"""``tokenledger settle`` and ``tokenledger close``: end a prediction through the API.

    tokenledger close p-9
    tokenledger settle p-9 --payouts payouts.csv --reason "p-9 resolved YES" [--house-contribution 500]
    tokenledger settle p-9 --cancel --reason "p-9 voided"
    tokenledger settle p-9 --status              # progress of its settlement
    tokenledger settle p-9 ... --wait            # poll until completed or failed

The payouts file is CSV with the header ``user_id,amount``, one line per user. The request is
``POST /v1/admin/predictions/{id}/settlement`` (it closes the prediction first); the payouts run
in the background (docs/admin.md). The Idempotency-Key defaults to a hash of the request, so
running the same command again answers the same settlement and moves nothing twice.

Exit codes: 0 done (or accepted), 1 refused by the API (or the settlement failed), 2 usage error.
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
from urllib.parse import quote

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
PAYOUT_LINES_MAX = 100_000
WAIT_POLL_S = 1.0
WAIT_S_MAX = 3600
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}"


class UsageError(Exception):
    """Bad input (arguments, the payouts file): exit code 2."""


def read_payouts(path: Path) -> list[dict[str, Any]]:
    """The payouts file as `[{user_id, amount}]`, in file order; the API validates the plan again."""
    payouts: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if set(reader.fieldnames or ()) != {"user_id", "amount"}:
            raise UsageError(f"{path}: the header must be user_id,amount, not {reader.fieldnames}")
        for row in reader:
            if len(payouts) >= PAYOUT_LINES_MAX:
                raise UsageError(f"{path}: more than {PAYOUT_LINES_MAX} payouts")
            user_id = (row.get("user_id") or "").strip()
            if not re.fullmatch(ID_PATTERN, user_id):
                raise UsageError(f"{path}:{reader.line_num}: {user_id!r} is not a user id")
            raw = (row.get("amount") or "").strip()
            if not re.fullmatch(r"[1-9][0-9]{0,9}", raw):
                raise UsageError(f"{path}:{reader.line_num}: amount must be a whole number of tokens, not {raw!r}")
            payouts.append({"user_id": user_id, "amount": int(raw)})
    if not payouts:
        raise UsageError(f"{path}: no payouts")
    return payouts


def _path(prediction_id: str, tail: str) -> str:
    return f"/v1/admin/predictions/{quote(prediction_id, safe='')}/{tail}"


def _print(args: argparse.Namespace, body: dict[str, Any]) -> None:
    if args.json:
        print(json.dumps(body, sort_keys=True))
        return
    for key, value in body.items():
        print(f"{key}: {value}")


def _wait(client: Any, prediction_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_S_MAX
    while True:
        body: dict[str, Any] = client.request("GET", _path(prediction_id, "settlement"), admin=True).body
        print(
            f"settlement {body['settlement_id']}: {body['status']}, "
            f"chunk {body['chunks_done']}/{body['chunks_total']}, "
            f"paid {body['paid_total']} of {body['payouts_total']}",
            file=sys.stderr,
            flush=True,
        )
        if body["status"] in ("completed", "failed") or time.monotonic() > deadline:
            return body
        time.sleep(WAIT_POLL_S)


def cmd_settle(args: argparse.Namespace) -> int:
    from infra.cli import ApiRefused

    client = args.client
    try:
        if args.status:
            body = client.request("GET", _path(args.prediction_id, "settlement"), admin=True).body
        else:
            if not args.reason:
                raise UsageError("--reason is required to settle")
            if args.cancel == bool(args.payouts):
                raise UsageError("pass either --payouts FILE (resolved) or --cancel")
            request: dict[str, Any] = {"reason": args.reason, "outcome": "cancelled" if args.cancel else "resolved"}
            if args.payouts:
                request["payouts"] = read_payouts(Path(args.payouts))
            if args.house_contribution:
                request["house_contribution"] = args.house_contribution
            canonical = json.dumps({"prediction_id": args.prediction_id, **request}, sort_keys=True)
            key = args.key or "settle-" + hashlib.sha256(canonical.encode()).hexdigest()[:40]
            reply = client.request(
                "POST",
                _path(args.prediction_id, "settlement"),
                admin=True,
                body=request,
                headers={"Idempotency-Key": key},
            )
            body = reply.body
            if args.wait:
                body = _wait(client, args.prediction_id)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ApiRefused as refused:
        print(f"refused ({refused.code}): {refused}", file=sys.stderr)
        return EXIT_REFUSED
    _print(args, body)
    return EXIT_REFUSED if body.get("status") == "failed" else EXIT_OK


def cmd_close(args: argparse.Namespace) -> int:
    from infra.cli import ApiRefused

    try:
        body = args.client.request("POST", _path(args.prediction_id, "close"), admin=True).body
    except ApiRefused as refused:
        print(f"refused ({refused.code}): {refused}", file=sys.stderr)
        return EXIT_REFUSED
    _print(args, body)
    return EXIT_OK


def _non_negative(raw: str) -> int:
    if not raw.isdigit() or int(raw) > 1_000_000_000:
        raise argparse.ArgumentTypeError(f"must be 0..1000000000, not {raw!r}")
    return int(raw)


def add_parser(subparsers: Any) -> None:
    """Register `settle` and `close` on the ops command line (infra/cli.py)."""
    parser = subparsers.add_parser(
        "settle",
        help="admin: settle a prediction (pay out or refund) through the API",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prediction_id")
    parser.add_argument("--payouts", help="CSV with header user_id,amount (outcome resolved)")
    parser.add_argument("--cancel", action="store_true", help="outcome cancelled: refund every commitment")
    parser.add_argument("--reason", help="why (recorded on every entry)")
    parser.add_argument("--house-contribution", type=_non_negative, default=0, help="tokens the house adds")
    parser.add_argument("--key", help="Idempotency-Key (default: a hash of the request)")
    parser.add_argument("--status", action="store_true", help="only show the settlement's progress")
    parser.add_argument("--wait", action="store_true", help="poll until the settlement completes or fails")
    parser.set_defaults(func=cmd_settle)

    close = subparsers.add_parser("close", help="admin: close a prediction to new commitments")
    close.add_argument("prediction_id")
    close.set_defaults(func=cmd_close)
