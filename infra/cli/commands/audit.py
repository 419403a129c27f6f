"""Checking accounts: ``audit`` (each account's chain and stored balance)."""

from __future__ import annotations

import argparse
import sys

from infra.cli.core import Commands, user_id
from infra.cli.errors import EXIT_INCONSISTENT, EXIT_OK, UsageError
from infra.cli.output import Progress, emit_json, table

AUDIT_USERS_MAX = 10_000


def register(commands: Commands) -> None:
    p = commands.add("audit", audit, help="admin: check accounts' chains and stored balances (exit 3 if one is off)")
    p.add_argument("users", nargs="*", metavar="user", type=user_id)
    p.add_argument("--file", help="read user ids from a file, one a line (- for stdin)")


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
