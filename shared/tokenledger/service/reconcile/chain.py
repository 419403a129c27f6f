"""The rules of one account's chain: seqs 1..n gapless, each balance_after following from the one
before, every hash chained on the previous one, and the account item (balance, version, head
hash) at the end of it.

`ChainCheck` is fed one entry at a time in seq order and keeps only running figures, so a
fleet run holds one per account and never an entry. `check_account_exactly` is the exact
check of one account (strongly consistent reads), used to confirm what a stream suggests and
by the per-account audit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from tokenledger.domain.chain import GENESIS_HASH, entry_hash
from tokenledger.domain.model import Account, Entry, EntryType
from tokenledger.service.reconcile.findings import CHAIN_KINDS, FindingKind
from tokenledger.service.reconcile.ports import AccountProbe

RECHECK_ENTRIES_MAX = 1_000_000  # entries one exact re-check reads before it gives up (a bug, not data)


@dataclass(slots=True)
class ChainCheck:
    """The running check of one account's chain up to the cut `version`, fed in seq order."""

    user_id: str
    balance: int  # stored, at the cut
    version: int  # the cut
    exists: bool = True
    head_hash: str | None = None  # stored on the account, at the cut
    last_seq: int = 0
    computed: int = 0  # balance_after of the last entry fed
    entries: int = 0
    beyond_cut_seq: int = 0  # highest seq seen above the cut (written after it, or drift)
    disordered: bool = False  # the stream was not in seq order: only a re-check can tell
    unrecovered: int = 0
    unrecovered_entries: int = 0
    # The hash chain: the last stored hash fed (None: genesis, or only unhashed entries so far).
    last_hash: str | None = None
    unhashed: int = 0  # entries from before the chain (no `hash`), all before the first hashed one
    findings: list[tuple[FindingKind, str]] | None = None

    def note(self, kind: FindingKind, detail: str) -> None:
        """Record a finding; the first of each kind per account is enough."""
        if self.findings is None:
            self.findings = []
        if all(k != kind for k, _ in self.findings):
            self.findings.append((kind, detail))

    def feed(self, entry: Entry) -> bool:
        """Take the next entry; False if it lies beyond the cut (ignored this run)."""
        if entry.seq > self.version:
            self.beyond_cut_seq = max(self.beyond_cut_seq, entry.seq)
            return False
        if self.disordered:
            return True
        if entry.seq < self.last_seq:
            self.disordered = True
            return True
        if entry.seq == self.last_seq:
            self.note(FindingKind.SEQ_DUPLICATE, f"seq {entry.seq} appears more than once")
            return True
        if entry.seq > self.last_seq + 1:
            first, last = self.last_seq + 1, entry.seq - 1
            missing = f"{first}" if first == last else f"{first}..{last}"
            self.note(FindingKind.SEQ_GAP, f"seq {missing} missing before seq {entry.seq}")
            self.last_hash = entry.hash or self.last_hash  # the hash cannot be checked across a gap
        elif self.computed + entry.amount != entry.balance_after:
            self.note(
                FindingKind.CHAIN_BREAK,
                f"seq {entry.seq}: balance_after {entry.balance_after} != {self.computed} + ({entry.amount})",
            )
            self._check_hash(entry)
        else:
            self._check_hash(entry)
        if entry.balance_after < 0:
            self.note(FindingKind.NEGATIVE_BALANCE, f"seq {entry.seq}: balance_after {entry.balance_after}")
        self.last_seq = entry.seq
        self.computed = entry.balance_after
        self.entries += 1
        if entry.type == EntryType.CHARGEBACK and entry.unrecovered:
            self.unrecovered += entry.unrecovered
            self.unrecovered_entries += 1
        return True

    def _check_hash(self, entry: Entry) -> None:
        """The entry's `hash` must be the one its content and the previous hash give.

        Entries from before the chain carry none; they may only come first (a missing hash
        after a hashed entry is a stripped one). The first hashed entry chains on genesis.
        """
        if entry.hash is None:
            if self.last_hash is None:
                self.unhashed += 1
                return
            self.note(FindingKind.HASH_MISMATCH, f"seq {entry.seq}: no hash after hashed entries")
            return
        expected = entry_hash(entry, self.last_hash or GENESIS_HASH)
        if entry.hash != expected:
            self.note(FindingKind.HASH_MISMATCH, f"seq {entry.seq}: stored hash does not match its content or chain")
        self.last_hash = entry.hash

    def finish(self) -> None:
        """The checks that need the whole chain up to the cut."""
        if self.disordered:
            return
        if not self.exists:
            if self.entries:
                self.note(FindingKind.ORPHAN_ENTRIES, f"{self.entries} entries (seq 1..{self.last_seq}), no account")
            return
        if self.last_seq != self.version:
            self.note(
                FindingKind.VERSION_MISMATCH,
                f"version {self.version} but the chain ends at seq {self.last_seq}",
            )
        if self.balance != self.computed:
            self.note(
                FindingKind.BALANCE_MISMATCH,
                f"stored balance {self.balance} != chain balance {self.computed} (at seq {self.last_seq})",
            )
        if self.balance < 0:
            self.note(FindingKind.NEGATIVE_BALANCE, f"stored balance {self.balance}")
        if self.head_hash is not None and self.last_seq == self.version and self.head_hash != self.last_hash:
            self.note(
                FindingKind.HASH_MISMATCH,
                f"the account's head hash is not the hash of seq {self.last_seq}",
            )
        if self.unrecovered:
            self.note(
                FindingKind.UNRECOVERED_CHARGEBACK,
                f"{self.unrecovered} tokens not recovered over {self.unrecovered_entries} chargeback entries",
            )

    @property
    def has_chain_findings(self) -> bool:
        """A chain finding from the stream: confirmed by an exact re-check before it is reported."""
        return any(kind in CHAIN_KINDS for kind, _ in self.findings or ())


def exact_chain(probe: AccountProbe, user_id: str) -> Iterator[Entry]:
    """The user's chain by exact reads, in seq order; more than RECHECK_ENTRIES_MAX entries is a bug."""
    for count, entry in enumerate(probe.iter_chain(user_id)):
        if count >= RECHECK_ENTRIES_MAX:
            raise RuntimeError(f"account {user_id} has more than {RECHECK_ENTRIES_MAX} entries")
        yield entry


def check_account_exactly(probe: AccountProbe, user_id: str) -> tuple[ChainCheck, Account | None]:
    """The exact check of one account: a consistent read of it, then its chain in seq order.

    Entries above the version read are re-checked against a second read of the account: a
    committed entry always moved its account in the same transaction, so an account still
    behind its chain after that read is drift, not a concurrent write.
    """
    account = probe.get_account(user_id)
    check = ChainCheck(
        user_id=user_id,
        balance=account.balance if account else 0,
        version=account.version if account else 0,
        exists=account is not None,
        head_hash=account.head_hash if account else None,
    )
    for entry in exact_chain(probe, user_id):
        check.feed(entry)
    if check.disordered:
        raise RuntimeError(f"the chain of {user_id} came back out of seq order from an ordered query")
    check.finish()
    if check.beyond_cut_seq:
        later = probe.get_account(user_id)
        if later is None:
            check.note(FindingKind.ORPHAN_ENTRIES, f"entries up to seq {check.beyond_cut_seq} exist, no account")
        elif later.version < check.beyond_cut_seq:
            check.note(
                FindingKind.VERSION_MISMATCH,
                f"entries up to seq {check.beyond_cut_seq} exist but the account is at version {later.version}",
            )
    return check, account
