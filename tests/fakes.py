"""An in-memory `LedgerRepository` with DynamoDB's transaction semantics, for unit tests.

All conditions of a commit are checked before anything is applied; a refusal reports
each reason the way the DynamoDB adapter decodes `CancellationReasons`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from tokenledger.domain.model import Account, Entry
from tokenledger.service.ports import (
    AccountWrite,
    EntryMark,
    Guard,
    IdempotencyClaim,
    StoredResponse,
    TransactionRefused,
)


class FakeRepository:
    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.entries: dict[tuple[str, int], Entry] = {}
        self.idempotency: dict[str, tuple[StoredResponse, int | None]] = {}
        self.guards: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self._lock = threading.Lock()
        # Hook run just before a commit is applied (e.g. to simulate a concurrent writer).
        self.before_commit: Callable[[], None] | None = None

    # ------------------------------------------------------------ reads
    def get_account(self, user_id: str) -> Account | None:
        self.calls.append("get_account")
        return self.accounts.get(user_id)

    def get_accounts(self, user_ids: Sequence[str]) -> dict[str, Account]:
        self.calls.append("get_accounts")
        return {u: self.accounts[u] for u in user_ids if u in self.accounts}

    def get_idempotency(self, pk: str) -> StoredResponse | None:
        self.calls.append("get_idempotency")
        found = self.idempotency.get(pk)
        return found[0] if found else None

    def get_guard(self, pk: str) -> dict[str, Any] | None:
        self.calls.append("get_guard")
        found = self.guards.get(pk)
        return dict(found) if found is not None else None

    def list_entries(
        self, user_id: str, *, before_seq: int | None, limit: int, entry_type: str | None
    ) -> tuple[list[Entry], int | None]:
        self.calls.append("list_entries")
        mine = sorted((e for (u, _), e in self.entries.items() if u == user_id), key=lambda e: -e.seq)
        if before_seq is not None:
            mine = [e for e in mine if e.seq < before_seq]
        if entry_type is not None:
            mine = [e for e in mine if str(e.type) == entry_type]
        page = mine[:limit]
        return page, (page[-1].seq if len(mine) > limit else None)

    def last_entry_before(self, user_id: str, bound: str, *, inclusive: bool) -> EntryMark | None:
        self.calls.append("last_entry_before")
        found = [
            e
            for (u, _), e in self.entries.items()
            if u == user_id and (e.created_at <= bound if inclusive else e.created_at < bound)
        ]
        if not found:
            return None
        last = max(found, key=lambda e: (e.created_at, e.seq))
        return EntryMark(seq=last.seq, balance_after=last.balance_after, hash=last.hash, created_at=last.created_at)

    def entries_after(self, user_id: str, after_seq: int, limit: int) -> list[Entry]:
        self.calls.append("entries_after")
        return [e for e in self.chain(user_id) if e.seq > after_seq][:limit]

    def find_entry(self, entry_id: str) -> Entry | None:
        self.calls.append("find_entry")
        return next((e for e in self.entries.values() if e.entry_id == entry_id), None)

    # ------------------------------------------------------------ the transaction
    def commit(
        self,
        writes: Sequence[AccountWrite],
        *,
        idempotency: IdempotencyClaim | None,
        guards: Sequence[Guard] = (),
    ) -> None:
        self.calls.append("commit")
        if self.before_commit is not None:
            hook, self.before_commit = self.before_commit, None
            hook()
        with self._lock:
            stale: dict[str, Account] = {}
            for write in writes:
                current = self.accounts.get(write.before.user_id)
                version = current.version if current else 0
                balance = current.balance if current else 0
                head = current.head_hash if current else None
                if (version, balance, head) != (write.before.version, write.before.balance, write.before.head_hash):
                    stale[write.before.user_id] = current or Account(user_id=write.before.user_id)
            replay = None
            if idempotency is not None and idempotency.pk in self.idempotency:
                replay = self.idempotency[idempotency.pk][0]
            failed = [g.name for g in guards if _guard_key(g) in self.guards or g.pk in self.idempotency]
            clash = any((e.user_id, e.seq) in self.entries for w in writes for e in w.entries)
            if stale or replay or failed or (clash and not stale):
                if clash and not (stale or replay or failed):
                    raise AssertionError("entry clash without a stale account: fake misuse")
                raise TransactionRefused(replay=replay, stale=stale, guards_failed=failed)
            for write in writes:
                self.accounts[write.after.user_id] = write.after
                for entry in write.entries:
                    self.entries[(entry.user_id, entry.seq)] = entry
            if idempotency is not None:
                self.idempotency[idempotency.pk] = (idempotency.response, idempotency.expires_at)
            for guard in guards:
                if not guard.check_only:
                    self.guards[_guard_key(guard)] = dict(guard.attributes)

    # ------------------------------------------------------------ checks
    def chain(self, user_id: str) -> list[Entry]:
        return sorted((e for (u, _), e in self.entries.items() if u == user_id), key=lambda e: e.seq)

    def assert_consistent(self, user_id: str) -> None:
        chain = self.chain(user_id)
        account = self.accounts.get(user_id, Account(user_id=user_id))
        assert [e.seq for e in chain] == list(range(1, len(chain) + 1))
        running = 0
        for entry in chain:
            running += entry.amount
            assert entry.balance_after == running >= 0
        assert account.version == len(chain)
        assert account.balance == running


def _guard_key(guard: Guard) -> str:
    """Idempotency-table guards by pk; predictions-table guards by (pk, sk)."""
    return guard.pk if guard.sk is None else f"{guard.pk}\x00{guard.sk}"
