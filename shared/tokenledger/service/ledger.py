"""The ledger's use cases: read balances and history, and move tokens exactly once.

Every write is one strongly consistent read (skipped when the caller's If-Match version is
known) and one transaction: account update on version and balance, the entries, and the
idempotency record. A refused transaction is read reason by reason: an existing idempotency
record means "already done" (replay), a moved account means "retry with its new state".
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tokenledger.domain.errors import (
    ContentionExhausted,
    InsufficientBalance,
    InvariantViolation,
    NotFound,
    PredictionClosed,
    VersionConflict,
)
from tokenledger.domain.model import Account, Entry, EntryDraft, EntryType, apply_drafts
from tokenledger.service.cursor import CursorCodec
from tokenledger.service.idempotency import IDEMPOTENCY_TTL_S, IdempotencyScope
from tokenledger.service.ports import (
    AccountWrite,
    Clock,
    Guard,
    IdempotencyClaim,
    LedgerRepository,
    NewId,
    StoredResponse,
    TransactionRefused,
)
from tokenledger.service.prediction_keys import CLOSED_GUARD, closed_check, stake_put

WRITE_ATTEMPTS_MAX = 6
RETRY_DELAY_MS_BASE = 5
RETRY_DELAY_MS_MAX = 200
HISTORY_LIMIT_DEFAULT = 20
HISTORY_LIMIT_MAX = 100
VERSION_CACHE_ENTRIES_MAX = 10_000
ADMIN_ENTRY_TYPES = frozenset({EntryType.GRANT, EntryType.PAYOUT, EntryType.REFUND, EntryType.ADJUSTMENT})


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write answered: its body, and whether it is the stored answer of an earlier request.

    A domain result: the HTTP layer picks the status each route answers with (`http.api.write_response`).
    """

    body: dict[str, Any]
    replayed: bool = False


class VersionCache:
    """Balance at (user, version), learned from reads and writes in this environment.

    The balance at a given version never changes (entries are immutable), so a hit lets
    an If-Match write skip its read. The account update still checks version *and* balance,
    so a wrong entry can only cost a retry, never a wrong write.
    """

    def __init__(self, entries_max: int = VERSION_CACHE_ENTRIES_MAX) -> None:
        self._entries: OrderedDict[tuple[str, int], Account] = OrderedDict()
        self._entries_max = entries_max

    def remember(self, account: Account) -> None:
        key = (account.user_id, account.version)
        self._entries[key] = account
        self._entries.move_to_end(key)
        while len(self._entries) > self._entries_max:
            self._entries.popitem(last=False)

    def lookup(self, user_id: str, version: int) -> Account | None:
        if version == 0:
            return Account(user_id=user_id)
        return self._entries.get((user_id, version))


def admin_draft(
    *, actor: str, entry_type: str, amount: int, reason: str, related_id: str | None, metadata: dict[str, str]
) -> EntryDraft:
    """An admin grant, payout, refund or adjustment, naming who did it and why.

    A payout or refund tied to a prediction names the prediction as its counterparty.
    """
    kind = EntryType(entry_type)
    if kind not in ADMIN_ENTRY_TYPES:
        raise InvariantViolation(f"{kind} is not an admin entry type")
    prediction_side = kind in (EntryType.PAYOUT, EntryType.REFUND) and related_id is not None
    return EntryDraft(
        type=kind,
        amount=amount,
        counterparty=f"prediction:{related_id}" if prediction_side else "admin",
        related_id=related_id,
        metadata=metadata,
        reason=reason,
        actor=actor,
    )


DraftPlanner = Callable[[Mapping[str, Account]], Mapping[str, Sequence[EntryDraft]]]
BodyBuilder = Callable[[list[Entry], dict[str, Account]], dict[str, Any]]
# Guards known up front, or made from the planned entries (a record that names the entry it goes with).
Guards = Sequence[Guard] | Callable[[list[Entry]], Sequence[Guard]]


def single_entry_body(user_id: str) -> BodyBuilder:
    """The `{entry, balance}` answer of a write of one entry on one account: built here, and only here."""

    def body(entries: list[Entry], after: dict[str, Account]) -> dict[str, Any]:
        return {"entry": entries[0].to_api(), "balance": after[user_id].balance}

    return body


class Ledger:
    def __init__(
        self,
        repo: LedgerRepository,
        *,
        clock: Clock,
        new_id: NewId,
        sleep: Callable[[float], None] = time.sleep,
        rng: Callable[[], float] = random.random,
        epoch_s: Callable[[], float] = time.time,
        write_attempts_max: int = WRITE_ATTEMPTS_MAX,
        cursors: CursorCodec | None = None,
    ) -> None:
        self.repo = repo
        self.cursors = cursors or CursorCodec()
        self._clock = clock
        self._new_id = new_id
        self._sleep = sleep
        self._rng = rng
        self._epoch_s = epoch_s
        self._write_attempts_max = write_attempts_max
        self.versions = VersionCache()
        self.last_write_attempts = 0  # attempts used by the last write (benchmarks read it)

    # ------------------------------------------------------------------ reads
    def account(self, user_id: str) -> Account:
        account = self.repo.get_account(user_id) or Account(user_id=user_id)
        self.versions.remember(account)
        return account

    def balance(self, user_id: str, *, required: int | None = None) -> dict[str, Any]:
        account = self.account(user_id)
        body: dict[str, Any] = {
            "user_id": user_id,
            "balance": account.balance,
            "version": account.version,
            "updated_at": account.updated_at,
        }
        if required is not None:
            body["sufficient"] = account.balance >= required
            body["shortfall"] = max(0, required - account.balance)
        return body

    def history(
        self,
        user_id: str,
        *,
        limit: int = HISTORY_LIMIT_DEFAULT,
        cursor: str | None = None,
        entry_type: str | None = None,
    ) -> dict[str, Any]:
        if not 1 <= limit <= HISTORY_LIMIT_MAX:
            raise InvariantViolation(f"history limit {limit} outside 1..{HISTORY_LIMIT_MAX}")
        before_seq = self.cursors.decode(cursor, caller=user_id, entry_type=entry_type) if cursor else None
        entries, next_seq = self.repo.list_entries(user_id, before_seq=before_seq, limit=limit, entry_type=entry_type)
        next_cursor = self.cursors.encode(caller=user_id, seq=next_seq, entry_type=entry_type) if next_seq else None
        return {"items": [e.to_api() for e in entries], "next_cursor": next_cursor}

    def entry(self, user_id: str, entry_id: str) -> dict[str, Any]:
        entry = self.repo.find_entry(entry_id)
        if entry is None or entry.user_id != user_id:
            raise NotFound(f"no entry {entry_id} on this account")
        return entry.to_api()

    # ------------------------------------------------------------------ writes
    def commit(
        self,
        *,
        user_id: str,
        prediction_id: str,
        amount: int,
        metadata: dict[str, str],
        scope: IdempotencyScope,
        if_match: int | None = None,
    ) -> WriteResult:
        """Debit `amount` from the user toward a prediction, unless the prediction is closed.

        The same transaction checks the prediction's closed marker and puts its stake item
        (`prediction_keys`): a commitment after the close is refused, never written.
        """
        draft = EntryDraft(
            type=EntryType.COMMITMENT,
            amount=-amount,
            counterparty=f"prediction:{prediction_id}",
            related_id=prediction_id,
            metadata=metadata,
        )
        guards = [
            closed_check(prediction_id),
            stake_put(prediction_id, user_id=user_id, amount=amount, request=scope.pk),
        ]
        try:
            return self.write_single(user_id, draft, scope=scope, if_match=if_match, guards=guards)
        except GuardFailed as refused:
            if refused.names != [CLOSED_GUARD]:
                raise InvariantViolation(f"commitment refused by {refused.names}") from None
            raise PredictionClosed(f"prediction {prediction_id} is closed", prediction_id=prediction_id) from None

    def admin_entry(
        self,
        *,
        actor: str,
        user_id: str,
        entry_type: str,
        amount: int,
        reason: str,
        related_id: str | None,
        metadata: dict[str, str],
        scope: IdempotencyScope,
    ) -> WriteResult:
        """An admin grant, payout, refund or adjustment, recording who did it and why."""
        draft = admin_draft(
            actor=actor, entry_type=entry_type, amount=amount, reason=reason, related_id=related_id, metadata=metadata
        )
        return self.write_single(user_id, draft, scope=scope)

    def write_single(
        self,
        user_id: str,
        draft: EntryDraft,
        *,
        scope: IdempotencyScope,
        if_match: int | None = None,
        guards: Sequence[Guard] = (),
    ) -> WriteResult:
        """One entry on one account, answered as `{entry, balance}`."""
        return self.write(
            lambda _accounts: {user_id: [draft]},
            users=[user_id],
            scope=scope,
            body=single_entry_body(user_id),
            expected_versions={user_id: if_match} if if_match is not None else None,
            guards=guards,
        )

    def write(
        self,
        plan: DraftPlanner,
        *,
        users: Sequence[str],
        scope: IdempotencyScope | None,
        body: BodyBuilder,
        expected_versions: Mapping[str, int] | None = None,
        guards: Guards = (),
        idempotency_ttl_s: int | None = IDEMPOTENCY_TTL_S,
        accounts_read: Mapping[str, Account] | None = None,
    ) -> WriteResult:
        """The one write path: plan entries from fresh account states, commit them atomically.

        `plan` maps the current accounts to the drafts per user (called again on each retry).
        Refusals are told apart: replay (idempotency record exists), moved account (retry,
        or 412 with If-Match), failed guard (raised as `GuardFailed` for the caller to map).
        `accounts_read`: the users' accounts, read strongly consistent by the caller in a round
        trip it needed anyway (the Stripe webhook reads its event record beside the account), or
        assumed (an account opened at sign-up is assumed new): the transaction checks them either way.
        A user planned with no drafts has its account opened if it does not exist yet (and is
        left alone if it does); a plan with no users writes only its idempotency record and guards.
        """
        # A cache hit (If-Match) is unverified: good enough to try a write (the transaction
        # checks it), never to refuse one. A refusal is judged again on a fresh read.
        verified = expected_versions is None or not self._cached(users, expected_versions)
        accounts = self._initial_accounts(users, expected_versions, accounts_read)
        for attempt in range(1, self._write_attempts_max + 1):
            self.last_write_attempts = attempt
            conflict = _version_conflict(accounts, expected_versions)
            if conflict is not None:
                return self._replay_or_raise(scope, conflict)
            try:
                drafts = plan(accounts)
                writes, entries = self._plan_writes(accounts, drafts)
            except InsufficientBalance as refused:
                if not verified:
                    accounts, verified = self._read_accounts(users), True
                    continue
                return self._replay_or_raise(scope, refused)
            afters = {w.after.user_id: w.after for w in writes}
            response = StoredResponse(request_hash=scope.request_hash if scope else "", body=body(entries, afters))
            claim = self._claim(scope, response, idempotency_ttl_s)
            guard_items = guards(entries) if callable(guards) else guards
            if not writes and claim is None and not guard_items:
                return WriteResult(body=response.body)  # nothing to write (an account already open)
            try:
                self.repo.commit(writes, idempotency=claim, guards=guard_items)
            except TransactionRefused as refused:
                if refused.replay is not None and scope is not None:
                    return self._replay(scope, refused.replay)
                if refused.guards_failed:
                    raise GuardFailed(refused.guards_failed) from None
                if not refused.stale and not refused.conflict:
                    raise InvariantViolation("transaction refused without a reason") from None
                accounts = {**accounts, **refused.stale}
                for account in refused.stale.values():
                    self.versions.remember(account)
                if attempt < self._write_attempts_max:
                    self._backoff(attempt)
                continue
            for after in afters.values():
                self.versions.remember(after)
            return WriteResult(body=response.body)
        raise ContentionExhausted(
            f"the account changed during each of {self._write_attempts_max} attempts; "
            "retry with the same Idempotency-Key"
        )

    # ------------------------------------------------------------------ helpers
    def _cached(self, users: Sequence[str], expected: Mapping[str, int]) -> bool:
        return set(expected) == set(users) and all(self.versions.lookup(u, v) is not None for u, v in expected.items())

    def _initial_accounts(
        self, users: Sequence[str], expected: Mapping[str, int] | None, read: Mapping[str, Account] | None
    ) -> dict[str, Account]:
        if read is not None and set(read) == set(users):
            for account in read.values():
                self.versions.remember(account)
            return dict(read)
        if expected is not None:
            cached = {u: self.versions.lookup(u, v) for u, v in expected.items()}
            if all(a is not None for a in cached.values()) and set(cached) == set(users):
                return {u: a for u, a in cached.items() if a is not None}
        return self._read_accounts(users)

    def _claim(
        self, scope: IdempotencyScope | None, response: StoredResponse, ttl_s: int | None
    ) -> IdempotencyClaim | None:
        """The idempotency record a write claims (None without a scope); None ttl_s keeps it forever."""
        if scope is None:
            return None
        expires_at = None if ttl_s is None else int(self._epoch_s()) + ttl_s
        return IdempotencyClaim(pk=scope.pk, response=response, expires_at=expires_at)

    def _read_accounts(self, users: Sequence[str]) -> dict[str, Account]:
        if len(users) == 1:
            return {users[0]: self.account(users[0])}
        found = self.repo.get_accounts(users)
        accounts = {u: found.get(u) or Account(user_id=u) for u in users}
        for account in accounts.values():
            self.versions.remember(account)
        return accounts

    def _plan_writes(
        self, accounts: Mapping[str, Account], drafts: Mapping[str, Sequence[EntryDraft]]
    ) -> tuple[list[AccountWrite], list[Entry]]:
        now = self._clock()
        writes: list[AccountWrite] = []
        entries: list[Entry] = []
        for user_id, user_drafts in drafts.items():
            before = accounts[user_id]
            if not user_drafts and before.exists:
                continue  # no entry, and the account is open already: nothing to write
            after, new_entries = apply_drafts(
                before, list(user_drafts), entry_ids=[self._new_id() for _ in user_drafts], now=now
            )
            writes.append(AccountWrite(before=before, after=after, entries=new_entries))
            entries.extend(new_entries)
        return writes, entries

    def _replay_or_raise(self, scope: IdempotencyScope | None, error: Exception) -> WriteResult:
        """Before refusing, check whether this exact request already succeeded."""
        if scope is not None:
            stored = self.repo.get_idempotency(scope.pk)
            if stored is not None:
                return self._replay(scope, stored)
        raise error

    def _replay(self, scope: IdempotencyScope, stored: StoredResponse) -> WriteResult:
        stored = scope.check_replay(stored)
        return WriteResult(body=stored.body, replayed=True)

    def _backoff(self, attempt: int) -> None:
        """Full jitter: uniform in [0, min(max, base * 2**attempt)] milliseconds."""
        ceiling_ms = min(RETRY_DELAY_MS_MAX, RETRY_DELAY_MS_BASE * 2**attempt)
        self._sleep(self._rng() * ceiling_ms / 1000)


class GuardFailed(Exception):
    """A guard item already existed; `names` says which. Callers map it to their own error."""

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__(", ".join(names))
        self.names = list(names)


def _version_conflict(accounts: Mapping[str, Account], expected: Mapping[str, int] | None) -> VersionConflict | None:
    """The If-Match refusal when an expected account version is not the current one, else None."""
    moved = [u for u, v in (expected or {}).items() if accounts[u].version != v]
    if not moved or expected is None:
        return None
    current = accounts[moved[0]].version
    return VersionConflict(
        f"account {moved[0]} is at version {current}, not {expected[moved[0]]}", current_version=current
    )
