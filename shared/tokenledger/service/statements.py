"""Balances at any moment and statements over a period, read without walking a whole history.

The access path (docs/reconciliation.md, "Statements and balances at a moment"):

- `created_at` strictly increases per user (the write path makes it so, see
  `tokenledger.domain.model.next_created_at`), so it orders a user's entries exactly as `seq`.
- The entries table's index `by-user-created` (user_id, created_at; projecting `balance_after`
  and `hash`) finds "the last entry at or before T" with one Query, `Limit` 1, newest first.
- The index is eventually consistent, so what it says is only a starting seq: the entries
  after it are read from the table itself (strongly consistent, by seq) until one lies past
  the bound. An entry the index has not caught up with yet is therefore never missed.

Balance at T: 2 round trips (index Query of 1 item, table Query of a few). A statement:
1 index Query, then table Queries of up to `STATEMENT_PAGE_ITEMS` until the end bound; never
more than `STATEMENT_ENTRIES_MAX` entries, else 422 `statement_too_large`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from tokenledger.domain.chain import GENESIS_HASH
from tokenledger.domain.errors import LedgerError, ValidationFailed
from tokenledger.domain.model import ENTRY_FIELDS, Entry, EntryType
from tokenledger.service.ports import EntryMark

STATEMENT_ENTRIES_MAX = 1_000  # entries in one statement (JSON about 400 B each: well under 6 MB)
STATEMENT_RANGE_DAYS_MAX = 366  # from..to at most this long
STATEMENT_PAGE_ITEMS = 250  # entries per table Query while reading a statement
FORWARD_PAGE_ITEMS = 10  # entries per table Query past the index's answer (it lags by about a second)
FORWARD_PAGES_MAX = 20  # then give up on finding the bound: the statement is too large anyway
INSTANT_CHARS_MAX = 40

# RFC 3339 date-time: full date, T, full time with optional fraction, and a required offset.
_RFC3339 = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
CSV_COLUMNS = (
    "seq",
    "created_at",
    "type",
    "amount",
    "balance_after",
    "counterparty",
    "related_id",
    "reverses",
    "reason",
    "actor",
    "entry_id",
    "metadata",
    "hash",
)


class StatementTooLarge(LedgerError):
    code = "statement_too_large"
    title = "Statement too large"


class StatementSource(Protocol):
    def last_entry_before(self, user_id: str, bound: str, *, inclusive: bool) -> EntryMark | None:
        """The index's newest entry with created_at < bound (<= when inclusive); eventually consistent."""
        ...

    def entries_after(self, user_id: str, after_seq: int, limit: int) -> list[Entry]:
        """Up to `limit` entries with seq > after_seq, oldest first (strongly consistent)."""
        ...


def parse_instant(text: str, *, name: str) -> str:
    """An RFC 3339 date-time as the ledger writes `created_at`: UTC, milliseconds (floored), `Z`."""
    match = _RFC3339.fullmatch(text) if len(text) <= INSTANT_CHARS_MAX else None
    try:
        if match is None:
            raise ValueError("not RFC 3339")
        fraction = (match.group(7) or ".0")[1:7].ljust(6, "0")
        offset = match.group(8).upper()
        base = f"{text[:10]}T{text[11:19]}.{fraction}{'+00:00' if offset == 'Z' else offset}"
        moment = datetime.fromisoformat(base).astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed(
            f"{name} must be an RFC 3339 date-time with an offset, e.g. 2026-11-01T00:00:00Z",
            errors=[{"loc": ["query", name], "type": "datetime_format"}],
        ) from None
    moment = moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _forward(source: StatementSource, user_id: str, after_seq: int, page_items: int) -> Iterator[Entry]:
    """The user's entries after `after_seq`, in seq order, page by page (bounded by the caller)."""
    while True:
        page = source.entries_after(user_id, after_seq, page_items)
        yield from page
        if len(page) < page_items:
            return
        after_seq = page[-1].seq


def balance_at(source: StatementSource, user_id: str, at: str) -> dict[str, Any]:
    """`GET /v1/balance?at=T`: the balance after the last entry created at or before T."""
    bound = parse_instant(at, name="at")
    mark = source.last_entry_before(user_id, bound, inclusive=True)
    seq, balance = (mark.seq, mark.balance_after) if mark else (0, 0)
    # The index may lag the table by a moment: look at what follows its answer, exactly.
    for count, entry in enumerate(_forward(source, user_id, seq, FORWARD_PAGE_ITEMS)):
        if entry.created_at > bound or count >= FORWARD_PAGE_ITEMS * FORWARD_PAGES_MAX:
            break
        seq, balance = entry.seq, entry.balance_after
    return {"user_id": user_id, "balance": balance, "version": seq, "at": bound}


def statement(source: StatementSource, user_id: str, start: str, end: str) -> dict[str, Any]:
    """Entries with start <= created_at < end, oldest first, with the balances around them.

    `opening_hash` is the hash of the entry just before the first one (genesis at seq 0), and
    `head_hash` the hash of the last one (the opening hash when there is none): the statement
    verifies on its own (`tokenledger verify`), and against a digest naming that seq.
    """
    lower = parse_instant(start, name="from")
    upper = parse_instant(end, name="to")
    if lower >= upper:
        raise ValidationFailed("from must be before to", errors=[{"loc": ["query", "from"], "type": "range"}])
    days = (_instant(upper) - _instant(lower)) / timedelta(days=1)
    if days > STATEMENT_RANGE_DAYS_MAX:
        raise StatementTooLarge(
            f"from..to spans {days:.0f} days; at most {STATEMENT_RANGE_DAYS_MAX} per statement: ask for shorter periods"
        )
    mark = source.last_entry_before(user_id, lower, inclusive=False)
    opening_seq, opening, opening_hash = (mark.seq, mark.balance_after, mark.hash) if mark else (0, 0, GENESIS_HASH)
    entries: list[Entry] = []
    read_max = STATEMENT_ENTRIES_MAX + FORWARD_PAGE_ITEMS * FORWARD_PAGES_MAX
    for count, entry in enumerate(_forward(source, user_id, opening_seq, STATEMENT_PAGE_ITEMS)):
        if entry.created_at >= upper:
            break
        if entry.created_at < lower:  # the index had not caught up with it: it opens the period
            opening_seq, opening, opening_hash = entry.seq, entry.balance_after, entry.hash
            if count >= read_max:
                raise StatementTooLarge("the period's start could not be found within the bound")
            continue
        entries.append(entry)
        if len(entries) > STATEMENT_ENTRIES_MAX:
            raise StatementTooLarge(
                f"more than {STATEMENT_ENTRIES_MAX} entries between from and to: ask for a shorter period"
            )
    totals = {str(t): 0 for t in EntryType}
    for entry in entries:
        totals[str(entry.type)] += entry.amount
    return {
        "user_id": user_id,
        "from": lower,
        "to": upper,
        "opening_balance": opening,
        "closing_balance": entries[-1].balance_after if entries else opening,
        "totals_by_type": totals,
        "entries": [e.to_api() for e in entries],
        "opening_seq": opening_seq,
        "opening_hash": opening_hash,
        "head_hash": entries[-1].hash if entries else opening_hash,
    }


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def statement_csv(body: dict[str, Any]) -> str:
    """The statement's entries as CSV: a header row, then one row per entry (metadata as JSON)."""
    import json

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for entry in body["entries"]:
        row = []
        for column in CSV_COLUMNS:
            value = entry.get(column)
            if column == "metadata":
                value = json.dumps(value or {}, separators=(",", ":"), sort_keys=True)
            row.append(_csv_safe("" if value is None else str(value)))
        writer.writerow(row)
    return out.getvalue()


def _csv_safe(value: str) -> str:
    """Neutralise spreadsheet formulas (CSV injection): a leading = + - @ tab or CR gets a quote."""
    if value and value[0] in "=+-@\t\r" and not _is_number(value):
        return "'" + value
    return value


def _is_number(value: str) -> bool:
    return value.lstrip("-").isdigit()


# ---------------------------------------------------------------------- offline verification
def verify_statement(body: dict[str, Any]) -> list[str]:
    """Every problem found in a statement (JSON as served), checked with no access to the ledger.

    Seqs follow on from `opening_seq`, balances from `opening_balance`, each hash from the one
    before (`opening_hash` first), and the closing balance, totals and `head_hash` agree.
    An empty list means the statement is internally consistent and its entries are exactly
    the ones whose hashes chain to `head_hash`: compare that with a digest to anchor it.
    """
    problems: list[str] = []
    try:
        seq = int(body["opening_seq"])
        balance = int(body["opening_balance"])
        prev: str | None = body["opening_hash"]
        user_id = str(body["user_id"])
        raw_entries = body["entries"]
        if not isinstance(raw_entries, list):
            raise TypeError("entries is not a list")
    except (KeyError, TypeError, ValueError) as missing:
        return [f"not a statement: {missing}"]
    totals: dict[str, int] = {}
    for index, raw in enumerate(raw_entries):
        try:
            # The entry as served, read back field by field (the hash covers them; nothing is trusted yet).
            row = Entry(**{name: raw.get(name) for name in ENTRY_FIELDS})
            row_seq, amount, after = int(row.seq), int(row.amount), int(row.balance_after)
        except (AttributeError, TypeError, ValueError):
            problems.append(f"entries[{index}] is not an entry")
            return problems
        problems.extend(_row_problems(body, row, user_id=user_id, seq=seq, balance=balance, prev=prev))
        seq, balance, prev = row_seq, after, row.hash
        totals[str(row.type)] = totals.get(str(row.type), 0) + amount
    if body.get("closing_balance") != balance:
        problems.append(f"closing_balance {body.get('closing_balance')} != {balance}")
    if body.get("head_hash") != prev:
        problems.append("head_hash is not the hash of the last entry")
    stated = {k: v for k, v in (body.get("totals_by_type") or {}).items() if v}
    if stated != {k: v for k, v in totals.items() if v}:
        problems.append("totals_by_type do not add up to the entries")
    return problems


STATEMENT_FILE_BYTES_MAX = 64 * 1024 * 1024
DIGEST_LINES_MAX = 10_000_000


def digest_problems(body: dict[str, Any], digest_lines: Iterator[str]) -> tuple[list[str], int]:
    """Check a statement against a reconciliation digest (the run's `.snapshot.jsonl`).

    The digest records each account's `version` and `head_hash` at that run. If the statement
    holds the entry at that seq (or opens right after it), its hash must be the recorded head:
    a history rewritten after the run cannot match it, however consistently it was redone.
    Returns (problems, anchors checked): 0 anchors means the digest says nothing about this
    statement (another user, or a run before or after its period).
    """
    import json

    user_id = body.get("user_id")
    by_seq: dict[int, str | None] = {int(body.get("opening_seq", 0)): body.get("opening_hash")}
    for raw in body.get("entries") or []:
        if isinstance(raw, dict) and isinstance(raw.get("seq"), int):
            by_seq[raw["seq"]] = raw.get("hash")
    for count, line in enumerate(digest_lines):
        if count >= DIGEST_LINES_MAX:
            break
        if not line.strip():
            continue
        record = json.loads(line)
        if record.get("user_id") != user_id:
            continue
        version = int(record.get("version", 0))
        if version not in by_seq or version == 0:
            return [], 0
        if by_seq[version] != record.get("head_hash"):
            return [f"seq {version}: hash differs from the digest's head hash ({record.get('head_hash')})"], 1
        return [], 1
    return [], 0


def _row_problems(
    body: dict[str, Any], row: Entry, *, user_id: str, seq: int, balance: int, prev: str | None
) -> list[str]:
    """What is wrong with one served entry, given the seq, balance and hash before it."""
    from tokenledger.domain.chain import entry_hash

    row_seq, amount, after = int(row.seq), int(row.amount), int(row.balance_after)
    where = f"seq {row_seq}"
    problems: list[str] = []
    if row.user_id != user_id:
        problems.append(f"{where}: belongs to {row.user_id}, not {user_id}")
    if row_seq != seq + 1:
        problems.append(f"{where}: expected seq {seq + 1}")
    if after != balance + amount:
        problems.append(f"{where}: balance_after {after} != {balance} + ({amount})")
    if not (str(body.get("from", "")) <= str(row.created_at) < str(body.get("to", ""))):
        problems.append(f"{where}: created_at {row.created_at} outside from..to")
    if row.hash is None:
        if prev is not None and prev != GENESIS_HASH:
            problems.append(f"{where}: no hash after hashed entries")
    elif row.hash != entry_hash(row, prev or GENESIS_HASH):
        problems.append(f"{where}: hash does not match its content and the previous hash")
    return problems
