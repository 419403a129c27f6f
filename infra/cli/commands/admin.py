"""Admin writes and reads: ``grant`` (any admin entry type), ``batch``, ``reverse``, ``balances``."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from infra.cli.client import new_key, path_part
from infra.cli.core import Commands, signed_tokens, text_value, user_id
from infra.cli.errors import EXIT_OK, UsageError
from infra.cli.output import emit_json, print_write, signed, table

ADMIN_ENTRY_TYPES = ("grant", "payout", "refund", "adjustment")
BATCH_COLUMNS = ("user_id", "type", "amount", "related_id")
BATCH_LINES_MAX = 10_000  # the API refuses more than its own limit per batch (422 batch_too_large) anyway
BALANCES_PER_REQUEST = 100


def register(commands: Commands) -> None:
    p = commands.add("grant", grant, help="admin: credit (or adjust) a user's tokens with a reason")
    p.add_argument("user", type=user_id, help="whose account")
    p.add_argument("amount", type=signed_tokens, help="tokens (signed for --type adjustment)")
    p.add_argument("--reason", required=True, type=text_value)
    p.add_argument("--type", choices=ADMIN_ENTRY_TYPES, default="grant")
    p.add_argument("--related-id", type=text_value, help="e.g. the prediction of a payout or refund")
    add_key(p)

    p = commands.add(
        "batch",
        batch,
        help="admin: write many entries in one all-or-nothing transaction, from a CSV or JSON file",
        epilog="CSV: a header with user_id,type,amount[,related_id], one operation a line. JSON: a list of "
        '{"user_id", "type", "amount", "related_id"?, "metadata"?} or {"operations": [...], "reason"?}.',
    )
    p.add_argument("file", help="the operations (.csv or .json; - for stdin, CSV unless --format json)")
    p.add_argument("--reason", type=text_value, help="why (required unless the JSON file has one)")
    p.add_argument("--format", choices=("csv", "json"), help="default: from the file's extension")
    add_key(p)

    p = commands.add("reverse", reverse, aliases=["reversal"], help="admin: compensate an entry with a reversal entry")
    p.add_argument("entry_id", type=user_id, help="the entry to reverse")
    p.add_argument("--reason", required=True, type=text_value)
    add_key(p)

    p = commands.add("balances", balances, help="admin: balances of many users and their total")
    p.add_argument("users", nargs="*", metavar="user", type=user_id)
    p.add_argument("--file", help="read user ids from a file, one a line (- for stdin)")


def add_key(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key", type=text_value, help="Idempotency-Key (default: a new one; reuse one to retry safely)"
    )


def grant(args: argparse.Namespace) -> int:
    reply = args.client.admin_entry(
        args.user, args.type, args.amount, reason=args.reason, related_id=args.related_id, key=args.key
    )
    return print_write(args, reply, args.type)


# ---------------------------------------------------------------- batch
def read_operations(path: str, file_format: str | None) -> tuple[list[dict[str, Any]], str | None]:
    """The operations of a CSV or JSON file, checked enough to point at the bad line; and a JSON reason."""
    kind = file_format or ("json" if path.lower().endswith(".json") else "csv")
    text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    if kind == "json":
        try:
            data = json.loads(text)
        except ValueError as error:
            raise UsageError(f"{path}: not JSON ({error})") from None
        reason = data.get("reason") if isinstance(data, dict) else None
        operations = data.get("operations") if isinstance(data, dict) else data
        if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
            raise UsageError(f'{path}: expected a list of operations or {{"operations": [...]}}')
        return operations, reason if isinstance(reason, str) else None
    reader = csv.DictReader(io.StringIO(text))
    columns = set(reader.fieldnames or ())
    if not {"user_id", "type", "amount"} <= columns or not columns <= set(BATCH_COLUMNS):
        raise UsageError(f"{path}: the header must be user_id,type,amount[,related_id], not {reader.fieldnames}")
    operations = []
    for row in reader:
        if len(operations) >= BATCH_LINES_MAX:
            raise UsageError(f"{path}: more than {BATCH_LINES_MAX} operations")
        raw_amount = (row.get("amount") or "").strip()
        try:
            amount = signed_tokens(raw_amount)
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"{path}:{reader.line_num}: amount: {error}") from None
        operation: dict[str, Any] = {
            "user_id": (row.get("user_id") or "").strip(),
            "type": (row.get("type") or "").strip(),
            "amount": amount,
        }
        if (row.get("related_id") or "").strip():
            operation["related_id"] = row["related_id"].strip()
        operations.append(operation)
    return operations, None


def batch(args: argparse.Namespace) -> int:
    operations, file_reason = read_operations(args.file, args.format)
    if not operations:
        raise UsageError(f"{args.file}: no operations")
    reason = args.reason or file_reason
    if not reason:
        raise UsageError("say why with --reason (recorded on every entry)")
    reply = args.client.request(
        "POST",
        "/v1/admin/batches",
        admin=True,
        body={"operations": operations, "reason": reason},
        headers={"idempotency-key": args.key or new_key()},
    )
    if args.json:
        emit_json({"status": reply.status, "replayed": reply.replayed, **reply.body})
        return EXIT_OK
    entries = reply.body["entries"]
    rows = [{**e, "amount": signed(e["amount"])} for e in entries]
    table(rows, ["user_id", "seq", "type", "amount", "balance_after", "related_id", "entry_id"])
    print(f"{len(entries)} entries written in one transaction; balances: {_pairs(reply.body['balances'])}")
    if reply.replayed:
        print("replayed: this Idempotency-Key was used before; nothing moved this time")
    return EXIT_OK


def _pairs(balances: dict[str, int]) -> str:
    return ", ".join(f"{user} {balance}" for user, balance in balances.items())


# ---------------------------------------------------------------- reversal, balances
def reverse(args: argparse.Namespace) -> int:
    reply = args.client.request(
        "POST",
        f"/v1/admin/entries/{path_part(args.entry_id)}/reversal",
        admin=True,
        body={"reason": args.reason},
        headers={"idempotency-key": args.key or new_key()},
    )
    return print_write(args, reply, "reversed")


def balances(args: argparse.Namespace) -> int:
    from infra.cli.commands.audit import read_ids

    users = read_ids(args)
    rows: list[dict[str, Any]] = []
    for start in range(0, len(users), BALANCES_PER_REQUEST):
        chunk = users[start : start + BALANCES_PER_REQUEST]
        body = args.client.request("GET", "/v1/admin/balances", admin=True, query={"user_ids": ",".join(chunk)}).body
        rows.extend(body["balances"])
    total = sum(int(row["balance"]) for row in rows)
    if args.json:
        emit_json({"balances": rows, "total": total})
        return EXIT_OK
    table(rows, ["user_id", "balance", "version"])
    print(f"total {total} tokens over {len(rows)} accounts")
    return EXIT_OK
