"""Settle a prediction: pay thousands of users in idempotent chunks that resume after a crash.

    python -m infra.settle p-9 --payouts payouts.csv --actor ops:alice --reason "p-9 resolved YES"
    tokenledger settle p-9 --payouts payouts.csv --actor ops:alice --reason "..."   # the ops CLI
    python -m infra.settle p-9 --payouts payouts.csv --actor ... --reason ... --status

The payouts file is CSV with a header: ``user_id,amount`` and an optional ``type`` column
(``payout``, the default, or ``refund`` for a cancelled prediction). Each chunk of at most
``BATCH_OPERATIONS_MAX`` lines is one DynamoDB transaction, so atomicity is per chunk, not per
settlement. Each chunk's idempotency record (kept forever) is its recorded progress: run the
same command again after a crash and it skips the chunks already written and pays the rest,
nobody twice. A different file under the same settlement id is refused.

It writes to DynamoDB directly (it is not an HTTP route): table names come from the
environment (``ACCOUNTS_TABLE``, ``ENTRIES_TABLE``, ``IDEMPOTENCY_TABLE``), or with ``--local``
from ``template.yaml``'s local names; the endpoint from ``AWS_ENDPOINT_URL(_DYNAMODB)`` as usual.

Exit codes: 0 done, 1 refused (the problem is printed), 2 usage error (e.g. a bad line).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tokenledger.domain.errors import LedgerError
from tokenledger.domain.model import EntryType, check_amount
from tokenledger.http.schemas import ID_PATTERN
from tokenledger.service.admin import (
    BATCH_OPERATIONS_MAX,
    SETTLEMENT_ENTRY_TYPES,
    AdminOperations,
    BatchOperation,
    ChunkOutcome,
    Settlement,
)

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
PAYOUT_LINES_MAX = 1_000_000
TABLE_VARIABLES = ("ACCOUNTS_TABLE", "ENTRIES_TABLE", "IDEMPOTENCY_TABLE")


class UsageError(Exception):
    """Bad input (arguments, the payouts file, missing configuration): exit code 2."""


def read_payouts(path: Path, *, prediction_id: str) -> list[BatchOperation]:
    """The payouts file as operations, in file order (the order decides the chunks)."""
    operations: list[BatchOperation] = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = set(reader.fieldnames or ())
        if not {"user_id", "amount"} <= columns or not columns <= {"user_id", "amount", "type"}:
            raise UsageError(f"{path}: the header must be user_id,amount[,type], not {reader.fieldnames}")
        for row in reader:
            line = reader.line_num
            if len(operations) >= PAYOUT_LINES_MAX:
                raise UsageError(f"{path}: more than {PAYOUT_LINES_MAX} payouts")
            user_id = (row.get("user_id") or "").strip()
            if not re.fullmatch(ID_PATTERN, user_id):
                raise UsageError(f"{path}:{line}: {user_id!r} is not a user id")
            raw_amount = (row.get("amount") or "").strip()
            if not re.fullmatch(r"[0-9]{1,10}", raw_amount):
                raise UsageError(f"{path}:{line}: amount must be a whole number of tokens, not {raw_amount!r}")
            try:
                amount = check_amount(int(raw_amount))
            except LedgerError as refused:
                raise UsageError(f"{path}:{line}: {refused.detail}") from None
            kind = (row.get("type") or "payout").strip()
            if kind not in SETTLEMENT_ENTRY_TYPES:
                raise UsageError(f"{path}:{line}: type must be payout or refund, not {kind!r}")
            operations.append(
                BatchOperation(user_id=user_id, type=EntryType(kind), amount=amount, related_id=prediction_id)
            )
    if not operations:
        raise UsageError(f"{path}: no payouts")
    return operations


def _admin_operations(local: bool) -> AdminOperations:
    if local:
        from infra.template import Stack

        environment = Stack().environment()
        for name in TABLE_VARIABLES:
            os.environ.setdefault(name, environment[name])
    missing = [name for name in TABLE_VARIABLES if not os.environ.get(name)]
    if missing:
        raise UsageError(f"set {', '.join(missing)} (or pass --local for the local stack's tables)")
    from tokenledger.config import build_ledger_from_env

    return AdminOperations(build_ledger_from_env())


def run(args: argparse.Namespace) -> int:
    as_json = bool(getattr(args, "json", False))
    try:
        operations = read_payouts(Path(args.payouts), prediction_id=args.prediction_id)
        settlement = Settlement(
            _admin_operations(args.local),
            prediction_id=args.prediction_id,
            operations=operations,
            actor=args.actor,
            reason=args.reason,
            settlement_id=args.settlement_id,
            chunk_size=args.chunk_size,
        )
        if args.status:
            result: dict[str, Any] = settlement.progress()
        else:
            result = dataclasses.asdict(settlement.run(on_chunk=_print_chunk))
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except LedgerError as refused:
        print(f"refused ({refused.code}): {refused.detail}", file=sys.stderr)
        return EXIT_REFUSED
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return EXIT_OK


def _print_chunk(outcome: ChunkOutcome) -> None:
    state = "written" if outcome.written else "already done"
    print(
        f"chunk {outcome.index + 1}/{outcome.chunks_total}: {state} "
        f"({outcome.operations} payouts, {outcome.tokens} tokens)",
        file=sys.stderr,
        flush=True,
    )


def _chunk_size(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= BATCH_OPERATIONS_MAX:
        raise argparse.ArgumentTypeError(f"must be 1..{BATCH_OPERATIONS_MAX}, not {raw!r}")
    return int(raw)


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prediction_id", help="the prediction settled (the entries' related_id)")
    parser.add_argument("--payouts", required=True, help="CSV with header user_id,amount[,type]")
    parser.add_argument("--actor", required=True, help="who settles (recorded on every entry), e.g. ops:alice")
    parser.add_argument("--reason", required=True, help="why (recorded on every entry)")
    parser.add_argument("--settlement-id", help="names this settlement's progress (default: the prediction id)")
    parser.add_argument(
        "--chunk-size",
        type=_chunk_size,
        default=BATCH_OPERATIONS_MAX,
        help=f"payouts per transaction, 1..{BATCH_OPERATIONS_MAX} (fixed for a settlement once started)",
    )
    parser.add_argument("--status", action="store_true", help="only report which chunks are written")
    parser.add_argument("--local", action="store_true", help="use template.yaml's local table names")
    parser.set_defaults(func=run)


def add_parser(subparsers: Any) -> None:
    """Register `settle` on another command line (infra/cli.py)."""
    parser = subparsers.add_parser(
        "settle",
        help="pay out a prediction in idempotent, resumable chunks (DynamoDB directly)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _configure(parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.settle", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    _configure(parser)
    args = parser.parse_args(list(argv) if argv is not None else None)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
