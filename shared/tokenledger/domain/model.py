"""Accounts, entries and the rules that move a balance.

Everything here is pure: given an account state and what should happen, it says
which entries to write and what the account becomes, or refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from tokenledger.domain.chain import entry_hash, prev_hash_of
from tokenledger.domain.errors import InsufficientBalance, InvariantViolation, ValidationFailed

AMOUNT_MIN = 1
AMOUNT_MAX = 1_000_000_000
METADATA_KEYS_MAX = 20
METADATA_KEY_CHARS_MAX = 40
METADATA_VALUE_CHARS_MAX = 500
REASON_CHARS_MAX = 500
ID_CHARS_MAX = 128
# What a user, prediction or related id may look like (no "|": service keys use it as a separator).
ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{ID_CHARS_MAX - 1}}}$"


class EntryType(StrEnum):
    PURCHASE = "purchase"
    COMMITMENT = "commitment"
    PAYOUT = "payout"
    REFUND = "refund"
    GRANT = "grant"
    ADJUSTMENT = "adjustment"
    REVERSAL = "reversal"
    CHARGEBACK = "chargeback"


# The sign each type may carry: +1 credit only, -1 debit only, 0 either.
ENTRY_SIGN: dict[EntryType, int] = {
    EntryType.PURCHASE: 1,
    EntryType.COMMITMENT: -1,
    EntryType.PAYOUT: 1,
    EntryType.REFUND: 1,
    EntryType.GRANT: 1,
    EntryType.ADJUSTMENT: 0,
    EntryType.REVERSAL: 0,
    EntryType.CHARGEBACK: -1,
}


@dataclass(frozen=True, slots=True)
class Account:
    """The stored state of one user's balance. `version` is the seq of the last entry."""

    user_id: str
    balance: int = 0
    version: int = 0
    created_at: str | None = None
    updated_at: str | None = None
    # `hash` of the entry at `version` (None: no entry yet, or only entries from before the chain).
    head_hash: str | None = None

    @property
    def exists(self) -> bool:
        return self.created_at is not None


@dataclass(frozen=True, slots=True)
class EntryDraft:
    """What should be written, before the ledger assigns seq, id and balance."""

    type: EntryType
    amount: int
    counterparty: str
    related_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    reverses: str | None = None
    reason: str | None = None
    actor: str | None = None
    # Tokens a clawback could not take back (the balance would have gone below zero).
    unrecovered: int | None = None


# An entry's fields as served (`Entry.to_api`, in this order; `unrecovered` only when set), and
# as a statement's entries are read back to be verified offline (service/statements.py).
ENTRY_FIELDS = (
    "entry_id",
    "user_id",
    "seq",
    "type",
    "amount",
    "balance_after",
    "counterparty",
    "related_id",
    "metadata",
    "created_at",
    "reverses",
    "reason",
    "actor",
    "hash",
    "unrecovered",
)


@dataclass(frozen=True, slots=True)
class Entry:
    """One immutable ledger line."""

    entry_id: str
    user_id: str
    seq: int
    type: EntryType
    amount: int
    balance_after: int
    counterparty: str
    related_id: str | None
    metadata: dict[str, str]
    created_at: str
    reverses: str | None = None
    reason: str | None = None
    actor: str | None = None
    unrecovered: int | None = None
    # SHA-256 over the canonical encoding and the previous hash (tokenledger.domain.chain);
    # None only on entries written before the chain existed.
    hash: str | None = None

    def to_api(self) -> dict[str, Any]:
        """The contract's Entry shape (plus `reason`/`actor`, and `unrecovered` when set): `ENTRY_FIELDS`."""
        body: dict[str, Any] = {name: getattr(self, name) for name in ENTRY_FIELDS}
        body["type"] = str(self.type)
        body["metadata"] = dict(self.metadata)
        if self.unrecovered is None:
            del body["unrecovered"]
        return body


def check_amount(amount: object, *, signed: bool = False, field_name: str = "amount") -> int:
    """An amount is a real int (not bool) with 1 <= |amount| <= AMOUNT_MAX."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ValidationFailed(f"{field_name} must be an integer", errors=[{"loc": [field_name], "type": "int_type"}])
    magnitude = abs(amount) if signed else amount
    if not AMOUNT_MIN <= magnitude <= AMOUNT_MAX:
        raise ValidationFailed(
            f"{field_name} must be between {AMOUNT_MIN} and {AMOUNT_MAX}" + (" in absolute value" if signed else ""),
            errors=[{"loc": [field_name], "type": "out_of_range"}],
        )
    return amount


def apply_drafts(
    account: Account, drafts: list[EntryDraft], *, entry_ids: list[str], now: str
) -> tuple[Account, list[Entry]]:
    """Append `drafts` to `account` in order; refuse if the balance would go below zero.

    Returns the new account state and the entries to write, consecutive in seq, each
    chained to the one before by its `hash` (the account carries the head). `created_at`
    strictly increases per user (see `next_created_at`), so it orders a user's entries as
    `seq` does and "the last entry at or before T" is one indexed lookup.
    """
    if len(entry_ids) != len(drafts):
        raise InvariantViolation("one entry id per draft")
    balance = account.balance
    seq = account.version
    head = account.head_hash
    created_at = account.updated_at
    entries: list[Entry] = []
    for draft, entry_id in zip(drafts, entry_ids, strict=True):
        sign = ENTRY_SIGN[draft.type]
        # A chargeback that finds nothing to take back still leaves its line: amount 0, all unrecovered.
        nothing_recovered = draft.type is EntryType.CHARGEBACK and (draft.unrecovered or 0) > 0
        zero_refused = draft.amount == 0 and not nothing_recovered
        if zero_refused or (sign == 1 and draft.amount < 0) or (sign == -1 and draft.amount > 0):
            raise InvariantViolation(f"{draft.type} entry with amount {draft.amount}")
        if balance + draft.amount < 0:
            shortfall = -(balance + draft.amount)
            raise InsufficientBalance(
                f"balance {balance} is short of {shortfall} for {draft.type} of {-draft.amount}",
                balance=balance,
                shortfall=shortfall,
            )
        balance += draft.amount
        seq += 1
        created_at = next_created_at(now, created_at)
        entry = Entry(
            entry_id=entry_id,
            user_id=account.user_id,
            seq=seq,
            type=draft.type,
            amount=draft.amount,
            balance_after=balance,
            counterparty=draft.counterparty,
            related_id=draft.related_id,
            metadata=dict(draft.metadata),
            created_at=created_at,
            reverses=draft.reverses,
            reason=draft.reason,
            actor=draft.actor,
            unrecovered=draft.unrecovered,
        )
        head = entry_hash(entry, prev_hash_of(head))
        entries.append(replace(entry, hash=head))
    after = replace(
        account,
        balance=balance,
        version=seq,
        created_at=account.created_at or now,
        updated_at=created_at or now,
        head_hash=head,
    )
    return after, entries


def next_created_at(now: str, previous: str | None) -> str:
    """`now`, or 1 ms after `previous` when the clock has not moved past it.

    Entries of one transaction, or a Lambda whose clock runs behind another's, would
    otherwise share or reverse timestamps. Both are ISO 8601 UTC with milliseconds and `Z`
    (fixed width, so they compare as strings).
    """
    if previous is None or now > previous:
        return now
    try:
        moment = datetime.fromisoformat(previous.replace("Z", "+00:00")) + timedelta(milliseconds=1)
    except ValueError:
        return previous  # not our clock's format (a test's fixed clock): keep it, never go back
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
