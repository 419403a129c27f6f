"""``verify``: check a statement file offline (its chain of hashes), optionally against a digest."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from infra.cli.core import Commands
from infra.cli.errors import EXIT_INCONSISTENT, EXIT_OK, UsageError
from infra.cli.output import emit_json
from tokenledger.service.statements import STATEMENT_FILE_BYTES_MAX, digest_problems, verify_statement


def register(commands: Commands) -> None:
    p = commands.add(
        "verify",
        verify,
        help="check a statement file (JSON) offline: seqs, balances, every hash, head (exit 3 if off)",
    )
    p.add_argument("statement", help="the statement as GET /v1/statements answered it (JSON)")
    p.add_argument(
        "--digest",
        help="a reconciliation digest (reports/.../<run_id>.snapshot.jsonl): the statement must match its head hash",
    )


def verify(args: argparse.Namespace) -> int:
    path = Path(args.statement)
    if path.stat().st_size > STATEMENT_FILE_BYTES_MAX:
        raise UsageError(f"{path} is larger than {STATEMENT_FILE_BYTES_MAX} bytes: not a statement")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise UsageError(f"{path} is not JSON: {error}") from None
    if not isinstance(body, dict):
        raise UsageError(f"{path} is not a statement (a JSON object)")
    problems = verify_statement(body)
    anchors = 0
    if args.digest:
        with open(args.digest, encoding="utf-8") as lines:
            found, anchors = digest_problems(body, iter(lines))
        problems.extend(found)
    if args.json:
        emit_json({"statement": str(path), "valid": not problems, "problems": problems, "digest_anchors": anchors})
    elif problems:
        for problem in problems:
            print(problem)
        print(f"{path}: NOT valid ({len(problems)} problems)")
    else:
        entries = body.get("entries") or []
        print(
            f"{path}: valid: {len(entries)} entries of {body.get('user_id')}, balance "
            f"{body.get('opening_balance')} -> {body.get('closing_balance')}, head {body.get('head_hash')}"
            + (
                f"; matches the digest at {anchors} seq"
                if anchors
                else ("; the digest names no seq of it" if args.digest else "")
            )
        )
    return EXIT_INCONSISTENT if problems else EXIT_OK
