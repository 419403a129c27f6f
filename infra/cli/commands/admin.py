"""Admin writes and reads: ``grant`` (any admin entry type)."""

from __future__ import annotations

import argparse

from infra.cli.core import Commands, signed_tokens, text_value, user_id
from infra.cli.output import print_write

ADMIN_ENTRY_TYPES = ("grant", "payout", "refund", "adjustment")


def register(commands: Commands) -> None:
    p = commands.add("grant", grant, help="admin: credit (or adjust) a user's tokens with a reason")
    p.add_argument("user", type=user_id, help="whose account")
    p.add_argument("amount", type=signed_tokens, help="tokens (signed for --type adjustment)")
    p.add_argument("--reason", required=True, type=text_value)
    p.add_argument("--type", choices=ADMIN_ENTRY_TYPES, default="grant")
    p.add_argument("--related-id", type=text_value, help="e.g. the prediction of a payout or refund")
    p.add_argument("--key", type=text_value, help="Idempotency-Key (default: a new one; reuse one to retry safely)")


def grant(args: argparse.Namespace) -> int:
    reply = args.client.admin_entry(
        args.user, args.type, args.amount, reason=args.reason, related_id=args.related_id, key=args.key
    )
    return print_write(args, reply, args.type)
