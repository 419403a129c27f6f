"""Checking accounts: ``audit`` (each account's chain and stored balance) and ``repair``."""

from __future__ import annotations

import argparse
import sys

from infra.cli.client import path_part
from infra.cli.core import Commands, text_value, user_id
from infra.cli.errors import EXIT_INCONSISTENT, EXIT_OK, UsageError
from infra.cli.output import Progress, emit_json, table

AUDIT_USERS_MAX = 10_000


def register(commands: Commands) -> None:
    p = commands.add("audit", audit, help="admin: check accounts' chains and stored balances (exit 3 if one is off)")
    p.add_argument("users", nargs="*", metavar="user", type=user_id)
    p.add_argument("--file", help="read user ids from a file, one a line (- for stdin)")

    p = commands.add("repair", repair, help="admin: rebuild a stored balance from the entries (never edits one)")
    p.add_argument("user", type=user_id)
    p.add_argument("--reason", type=text_value, help="why (recorded with the repair)")


def read_ids(args: argparse.Namespace, *, what: str = "user") -> list[str]:
    """The positional ids plus those of ``--file`` (``-``: stdin; ``#`` comments), without repeats."""
    ids = list(args.users or [])
    if args.file:
        handle = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
        with handle:
            ids.extend(line.strip() for line in handle if line.strip() and not line.startswith("#"))
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise UsageError(f"name at least one {what} (or --file ids.txt, - for stdin)")
    if len(ids) > AUDIT_USERS_MAX:
        raise UsageError(f"at most {AUDIT_USERS_MAX} {what}s per run")
    return ids


def audit(args: argparse.Namespace) -> int:
    users = read_ids(args)
    reports = []
    with Progress("auditing", len(users)) as progress:
        for user in users:
            reports.append(args.client.audit(user))
            progress.advance()
    bad = [r for r in reports if not r.get("consistent")]
    if args.json:
        emit_json({"accounts": reports, "consistent": not bad})
    else:
        rows = [
            {**r, "issues": "; ".join(f"{i.get('kind')}: {i.get('detail')}" for i in r.get("inconsistencies", []))}
            for r in reports
        ]
        columns = ["user_id", "stored_balance", "computed_balance", "version", "entries_checked", "consistent"]
        table(rows, [*columns, "issues"])
        print(f"{len(reports) - len(bad)} of {len(reports)} accounts consistent")
    return EXIT_INCONSISTENT if bad else EXIT_OK


def repair(args: argparse.Namespace) -> int:
    body: dict[str, str] = {"reason": args.reason} if args.reason else {}
    answer = args.client.request(
        "POST", f"/v1/admin/accounts/{path_part(args.user)}/repair", admin=True, body=body
    ).body
    if args.json:
        emit_json(answer)
        return EXIT_OK
    before, after = answer["before"], answer["after"]
    if answer["repaired"]:
        print(
            f"repaired {args.user}: stored balance {before['balance']} (version {before['version']}) "
            f"is now {after['balance']} (version {after['version']}), as the entries say"
        )
    else:
        print(f"{args.user} needed no repair: stored balance {before['balance']} matches the entries")
    return EXIT_OK
