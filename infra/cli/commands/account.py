"""A user's own routes: ``balance``, ``history``, ``commit``."""

from __future__ import annotations

import argparse

from infra.cli.client import HISTORY_PAGE_MAX
from infra.cli.core import Commands, acting_user, add_user_argument, text_value, tokens, whole_number
from infra.cli.errors import EXIT_OK
from infra.cli.output import Progress, emit_json, print_write, signed, table

HISTORY_ENTRIES_MAX = 10_000
ENTRY_TYPES = ("purchase", "commitment", "payout", "refund", "grant", "adjustment", "reversal", "chargeback")


def register(commands: Commands) -> None:
    p = commands.add("balance", balance, help="a user's balance")
    add_user_argument(p)
    p.add_argument("--required", type=tokens, metavar="N", help="also tell whether the balance covers N tokens")

    p = commands.add("history", history, help="a user's entries, newest first")
    add_user_argument(p)
    p.add_argument(
        "--limit",
        type=whole_number(1, HISTORY_ENTRIES_MAX),
        default=20,
        help=f"how many entries (1..{HISTORY_ENTRIES_MAX}, default 20)",
    )
    p.add_argument("--type", choices=ENTRY_TYPES, help="only entries of this type")

    p = commands.add("commit", commit, help="commit a user's tokens to a prediction")
    add_user_argument(p)
    p.add_argument("amount", type=tokens, help="tokens, 1..1000000000")
    p.add_argument("--prediction", required=True, type=text_value, help="the prediction id")
    p.add_argument("--key", type=text_value, help="Idempotency-Key (default: a new one; reuse one to retry safely)")


def balance(args: argparse.Namespace) -> int:
    body = args.client.balance(acting_user(args), required=args.required)
    if args.json:
        emit_json(body)
        return EXIT_OK
    table([body], [c for c in ("user_id", "balance", "version", "updated_at", "sufficient", "shortfall") if c in body])
    return EXIT_OK


def history(args: argparse.Namespace) -> int:
    user = acting_user(args)
    with Progress("reading history", args.limit if args.limit > HISTORY_PAGE_MAX else None) as progress:
        items = args.client.history(user, limit=args.limit, entry_type=args.type, on_page=progress.advance)
    if args.json:
        emit_json({"items": items})
        return EXIT_OK
    rows = [
        {**item, "amount": signed(item["amount"]), "related_id": item.get("related_id") or item.get("reverses")}
        for item in items
    ]
    table(rows, ["seq", "created_at", "type", "amount", "balance_after", "counterparty", "related_id", "entry_id"])
    if not items:
        print(f"(no entries for {user or 'this token'})")
    return EXIT_OK


def commit(args: argparse.Namespace) -> int:
    reply = args.client.commit(acting_user(args), args.prediction, args.amount, key=args.key)
    return print_write(args, reply, "committed")
