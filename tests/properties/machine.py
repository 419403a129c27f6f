"""A hypothesis state machine of the ledger rules, checked against a simple model after every step.

The model is a dict of balances and the answers remembered per idempotency key. The system is
the real `Ledger` service over a repository (the in-memory fake with DynamoDB's transaction
semantics, or DynamoDB itself on moto), wrapped so that a commit can fail before it is applied
(throttled) or after (the answer is lost: a timeout after the write committed). Whatever the
sequence, after every step: balance = sum of entries, seq 1..n, the chain, never below zero,
and the model's balances.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tokenledger.adapters.ids import utc_now_iso
from tokenledger.domain.errors import AlreadyReversed, IdempotencyKeyReused, InsufficientBalance, VersionConflict
from tokenledger.domain.model import Account, Entry, EntryDraft, EntryType
from tokenledger.service.admin import AdminOperations
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import Ledger
from tokenledger.service.ports import AccountWrite, Guard, IdempotencyClaim, LedgerRepository, StoredResponse

USERS = ("alice", "bob", "carol")
ADMIN = "admin-1"
amounts = st.integers(min_value=1, max_value=300)
users = st.sampled_from(USERS)


class CommitFailed(Exception):
    """The repository's commit raised: applied or not, the caller cannot tell."""


class FlakyRepository:
    """Delegates to a real repository; a commit may be refused before applying or lose its answer after."""

    def __init__(self, inner: LedgerRepository) -> None:
        self.inner = inner
        self.fail_next: str | None = None  # "before" or "after"
        self.before_commit: Callable[[], None] | None = None  # a concurrent writer, run once

    def get_account(self, user_id: str) -> Account | None:
        return self.inner.get_account(user_id)

    def get_accounts(self, user_ids: Sequence[str]) -> dict[str, Account]:
        return self.inner.get_accounts(user_ids)

    def get_idempotency(self, pk: str) -> StoredResponse | None:
        return self.inner.get_idempotency(pk)

    def list_entries(
        self, user_id: str, *, before_seq: int | None, limit: int, entry_type: str | None
    ) -> tuple[list[Entry], int | None]:
        return self.inner.list_entries(user_id, before_seq=before_seq, limit=limit, entry_type=entry_type)

    def find_entry(self, entry_id: str) -> Entry | None:
        return self.inner.find_entry(entry_id)

    def get_guard(self, pk: str) -> Any:
        return self.inner.get_guard(pk)  # type: ignore[attr-defined]

    def commit(
        self, writes: Sequence[AccountWrite], *, idempotency: IdempotencyClaim | None, guards: Sequence[Guard] = ()
    ) -> None:
        if self.before_commit is not None:
            hook, self.before_commit = self.before_commit, None
            hook()
        failure, self.fail_next = self.fail_next, None
        if failure == "before":
            raise CommitFailed("throttled before the write")
        self.inner.commit(writes, idempotency=idempotency, guards=guards)
        if failure == "after":
            raise CommitFailed("timed out after the write committed")


@dataclass
class Sent:
    """A request the model remembers, to send again with the same key."""

    kind: str
    user: str
    amount: int  # signed: what it moves when it lands
    key: str
    status: int | None  # None: the answer was lost, the outcome unknown until a retry
    body: dict[str, Any] | None


class LedgerMachine(RuleBasedStateMachine):
    """Subclasses give `make_repository()` and `check_account(user)` for their backend."""

    def make_repository(self) -> LedgerRepository:
        raise NotImplementedError

    def check_account(self, user_id: str) -> tuple[int, int]:
        """Assert the stored chain is consistent; return (balance, version)."""
        raise NotImplementedError

    # ------------------------------------------------------------ setup
    @initialize()
    def setup(self) -> None:
        self.repo = FlakyRepository(self.make_repository())
        ids = itertools.count()
        self.ledger = self._ledger(ids)
        self.other = self._ledger(ids)  # a second environment writing to the same store
        self.balances = dict.fromkeys(USERS, 0)
        self.versions = dict.fromkeys(USERS, 0)
        self.sent: list[Sent] = []
        self.keys = itertools.count()
        self.written: dict[str, tuple[str, int]] = {}  # entry id -> (user, amount)
        self.reversed: set[str] = set()

    def _ledger(self, ids: itertools.count[int]) -> Ledger:
        return Ledger(
            self.repo,
            clock=utc_now_iso,
            new_id=lambda: f"e{next(ids):08d}",
            sleep=lambda _s: None,
            rng=lambda: 0.5,
        )

    def _key(self) -> str:
        return f"k{next(self.keys)}"

    # ------------------------------------------------------------ the model
    def _landed(self, user: str, amount: int) -> None:
        self.balances[user] += amount
        self.versions[user] += 1

    def _wrote(self, body: dict[str, Any] | None) -> None:
        """Remember the entries an answer names, so later steps can reverse them."""
        if body is None:
            return
        for entry in [body["entry"]] if "entry" in body else body.get("entries", []):
            self.written[entry["entry_id"]] = (entry["user_id"], entry["amount"])

    def _scope(self, kind: str, user: str, amount: int, key: str) -> IdempotencyScope:
        caller = user if kind == "commitment" else ADMIN
        return IdempotencyScope(caller, kind, key, request_hash([kind, user, amount]))

    def _send(self, kind: str, user: str, amount: int, key: str, *, if_match: int | None = None) -> Any:
        scope = self._scope(kind, user, amount, key)
        if kind == "commitment":
            return self.ledger.commit(
                user_id=user, prediction_id="p1", amount=-amount, metadata={}, scope=scope, if_match=if_match
            )
        return self.ledger.admin_entry(
            actor=ADMIN,
            user_id=user,
            entry_type=kind,
            amount=amount,
            reason="property",
            related_id=None,
            metadata={},
            scope=scope,
        )

    def _write(self, kind: str, user: str, amount: int, *, if_match: int | None = None) -> None:
        """Send a new request and hold the system to the model's answer."""
        key = self._key()
        expected_balance = self.balances[user] + amount
        try:
            result = self._send(kind, user, amount, key, if_match=if_match)
        except InsufficientBalance as refused:
            assert expected_balance < 0, "refused although the balance sufficed"
            assert refused.balance == self.balances[user] and refused.shortfall == -expected_balance
            return
        except VersionConflict:
            assert if_match is not None and if_match != self.versions[user]
            return
        assert expected_balance >= 0, f"accepted {amount} on a balance of {self.balances[user]}"
        assert if_match is None or if_match == self.versions[user]
        assert not result.replayed  # a new write (its route answers 201: http.api.write_response)
        assert result.body["balance"] == expected_balance
        assert result.body["entry"]["amount"] == amount and result.body["entry"]["seq"] == self.versions[user] + 1
        self._landed(user, amount)
        self._wrote(result.body)
        self.sent.append(Sent(kind, user, amount, key, 201, result.body))

    # ------------------------------------------------------------ rules
    @rule(user=users, amount=amounts)
    def grant(self, user: str, amount: int) -> None:
        self._write("grant", user, amount)

    @rule(user=users, amount=amounts, kind=st.sampled_from(["payout", "refund"]))
    def credit(self, user: str, amount: int, kind: str) -> None:
        self._write(kind, user, amount)

    @rule(user=users, amount=amounts)
    def commitment(self, user: str, amount: int) -> None:
        self._write("commitment", user, -amount)

    @rule(user=users, amount=amounts, credit=st.booleans())
    def adjustment(self, user: str, amount: int, credit: bool) -> None:
        self._write("adjustment", user, amount if credit else -amount)

    @rule(user=users, amount=amounts, behind=st.integers(min_value=0, max_value=2))
    def commitment_if_match(self, user: str, amount: int, behind: int) -> None:
        self._write("commitment", user, -amount, if_match=max(0, self.versions[user] - behind))

    @precondition(lambda self: bool(self.sent))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        """The same request again: the first answer, moving nothing; or, if it never landed, the write now."""
        sent = data.draw(st.sampled_from(self.sent))
        try:
            result = self._send(sent.kind, sent.user, sent.amount, sent.key)
        except InsufficientBalance:
            assert sent.status is None, "a landed request was refused on replay"
            assert self.balances[sent.user] + sent.amount < 0
            return
        if sent.status is None:  # refused before it was applied: this is its first landing
            assert not result.replayed
            self._landed(sent.user, sent.amount)
        else:
            assert result.replayed, "a landed request was written again"
            if sent.body is not None:
                assert result.body == sent.body
        sent.status, sent.body = 201, result.body  # landed: its route answers 201, first time and replayed
        self._wrote(result.body)

    @precondition(lambda self: any(s.status is not None for s in self.sent))
    @rule(data=st.data(), delta=st.integers(min_value=1, max_value=5))
    def key_reused_with_another_body(self, data: st.DataObject, delta: int) -> None:
        sent = data.draw(st.sampled_from([s for s in self.sent if s.status is not None]))
        try:
            self._send(sent.kind, sent.user, sent.amount + delta if sent.amount > 0 else sent.amount - delta, sent.key)
        except IdempotencyKeyReused:
            return
        raise AssertionError("the same key with another body was accepted")

    @rule(user=users, amount=amounts, other=amounts)
    def concurrent_writer_lands_between_read_and_commit(self, user: str, amount: int, other: int) -> None:
        """Another environment grants to the same account while this commitment is in flight."""
        other_key = self._key()
        interfered: list[bool] = []

        def interfere() -> None:
            interfered.append(True)
            self.other.admin_entry(
                actor=ADMIN,
                user_id=user,
                entry_type="grant",
                amount=other,
                reason="concurrent",
                related_id=None,
                metadata={},
                scope=self._scope("grant", user, other, other_key),
            )

        self.repo.before_commit = interfere
        before = self.balances[user]
        key = self._key()
        try:
            result = self._send("commitment", user, -amount, key)
        except InsufficientBalance:
            if interfered:
                self._landed(user, other)
            assert self.balances[user] - amount < 0, "refused although the fresh balance sufficed"
            return
        finally:
            self.repo.before_commit = None
        assert interfered
        self._landed(user, other)
        assert result.body["balance"] == before + other - amount >= 0
        self._landed(user, -amount)
        self._wrote(result.body)
        self.sent.append(Sent("commitment", user, -amount, key, 201, result.body))

    @rule(
        user=users,
        amount=amounts,
        kind=st.sampled_from(["grant", "commitment"]),
        when=st.sampled_from(["before", "after"]),
    )
    def write_fails(self, user: str, amount: int, kind: str, when: str) -> None:
        """A commit raises before applying (nothing moved) or after (moved; the answer lost)."""
        signed = amount if kind == "grant" else -amount
        if self.balances[user] + signed < 0:
            return  # a refusal never reaches the commit
        key = self._key()
        self.repo.fail_next = when
        try:
            self._send(kind, user, signed, key)
        except CommitFailed:
            pass
        else:
            raise AssertionError("the injected failure did not reach the caller")
        if when == "after":  # landed; the answer is only known from a replay
            self._landed(user, signed)
            self.sent.append(Sent(kind, user, signed, key, 201, None))
        else:  # nothing landed: a retry with the same key writes it then
            self.sent.append(Sent(kind, user, signed, key, None, None))

    @rule(
        moves=st.lists(
            st.tuples(users, st.integers(min_value=-200, max_value=200).filter(bool)), min_size=1, max_size=4
        )
    )
    def batch_all_or_nothing(self, moves: list[tuple[str, int]]) -> None:
        """Several adjustments over several accounts in one transaction: all land or none."""
        key = self._key()
        scope = IdempotencyScope(ADMIN, "batch", key, request_hash(moves))
        touched = sorted({u for u, _ in moves})

        def plan(_accounts: Any) -> dict[str, list[EntryDraft]]:
            drafts: dict[str, list[EntryDraft]] = {u: [] for u in touched}
            for user, amount in moves:
                drafts[user].append(EntryDraft(type=EntryType.ADJUSTMENT, amount=amount, counterparty="admin"))
            return drafts

        def body(entries: list[Entry], after: dict[str, Account]) -> dict[str, Any]:
            return {"entries": [e.to_api() for e in entries], "balances": {u: a.balance for u, a in after.items()}}

        running = dict(self.balances)
        fits = True
        for user, amount in moves:
            running[user] += amount
            fits = fits and running[user] >= 0
        try:
            result = self.ledger.write(plan, users=touched, scope=scope, body=body)
        except InsufficientBalance:
            assert not fits, "a batch that fits was refused"
            return
        assert fits, "a batch that drives a balance below zero was accepted"
        for user, amount in moves:
            self._landed(user, amount)
        self._wrote(result.body)
        assert result.body["balances"] == {u: self.balances[u] for u in touched}

    @precondition(lambda self: bool(self.written))
    @rule(data=st.data())
    def reversal(self, data: st.DataObject) -> None:
        """Reverse an entry: once only (409 already_reversed after), never below zero."""
        entry_id = data.draw(st.sampled_from(sorted(self.written)))
        user, amount = self.written[entry_id]
        key = self._key()
        scope = IdempotencyScope(ADMIN, "reversal", key, request_hash([entry_id]))
        try:
            result = AdminOperations(self.ledger).reverse(actor=ADMIN, entry_id=entry_id, reason="p", scope=scope)
        except AlreadyReversed:
            assert entry_id in self.reversed, "a first reversal was refused as a second"
            return
        except InsufficientBalance:
            assert entry_id not in self.reversed and self.balances[user] - amount < 0
            return
        assert entry_id not in self.reversed, "an entry was reversed twice"
        assert self.balances[user] - amount >= 0
        assert result.body["entry"]["reverses"] == entry_id and result.body["entry"]["amount"] == -amount
        self.reversed.add(entry_id)
        self._landed(user, -amount)
        self._wrote(result.body)

    # ------------------------------------------------------------ after every step
    @invariant()
    def ledger_matches_model(self) -> None:
        if not hasattr(self, "repo"):
            return
        for user in USERS:
            balance, version = self.check_account(user)
            assert balance == self.balances[user] >= 0, f"{user}: stored {balance}, model {self.balances[user]}"
            assert version == self.versions[user], f"{user}: version {version}, model {self.versions[user]}"
