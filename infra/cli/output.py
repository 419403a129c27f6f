"""What commands print: tables for people, JSON for scripts, a progress bar on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO


class Progress:
    """A one-line progress bar on a terminal's stderr; silent when stderr is not a terminal."""

    WIDTH = 30

    def __init__(self, label: str, total: int | None, stream: TextIO | None = None) -> None:
        self.label = label
        self.total = total
        self.done = 0
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()

    def advance(self, count: int = 1) -> None:
        self.done += count
        if not self.enabled:
            return
        if self.total:
            filled = int(self.WIDTH * min(self.done, self.total) / self.total)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.stream.write(f"\r{self.label} [{bar}] {self.done}/{self.total}")
        else:
            self.stream.write(f"\r{self.label} {self.done}")
        self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled and self.done:
            self.stream.write("\n")
            self.stream.flush()


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str], *, out: TextIO | None = None) -> None:
    """A plain text table; numbers right-aligned."""
    out = out or sys.stdout
    cells = [[_cell(row.get(column)) for column in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), int) for row in rows) and bool(rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    out.write(line(list(columns)) + "\n")
    out.write(line(["-" * w for w in widths]) + "\n")
    for row in cells:
        out.write(line(row) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def signed(amount: int) -> str:
    return f"{amount:+d}"


def emit_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True) + "\n")


def print_write(args: Any, reply: Any, verb: str) -> int:
    """The answer of a route that writes one entry (`{entry, balance}`): one line, or the JSON."""
    if args.json:
        emit_json({"status": reply.status, "replayed": reply.replayed, **reply.body})
        return 0
    entry = reply.body["entry"]
    print(
        f"{verb}: {signed(entry['amount'])} tokens for {entry['user_id']} "
        f"(entry {entry['entry_id']}, seq {entry['seq']}); balance now {reply.body['balance']}"
    )
    if reply.replayed:
        print("replayed: this Idempotency-Key was used before; nothing moved this time")
    return 0
