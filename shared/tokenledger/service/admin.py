"""Admin use cases: all-or-nothing batches, reversals, balance summaries, opening accounts.

Every write here goes through the one write path, `Ledger.write`: one strongly consistent read
of the accounts, then one `TransactWriteItems` holding the account updates, the entries and the
idempotency record (plus, for a reversal, the guard that makes it happen once).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokenledger.domain.errors import (
    AlreadyClawedBack,
    AlreadyReversed,
    BatchTooLarge,
    ContentionExhausted,
    InsufficientBalance,
    InvariantViolation,
    NotFound,
    NothingToReverse,
    PredictionClosed,
    ValidationFailed,
)
from tokenledger.domain.model import AMOUNT_MAX, Account, Entry, EntryDraft, EntryType
from tokenledger.service.clawback import CLAWBACK_ATTEMPTS_MAX, CLAWBACK_STEP_GUARD, STRIPE, clawback_level
from tokenledger.service.idempotency import IDEMPOTENCY_TTL_S, IdempotencyScope, request_hash
from tokenledger.service.ledger import GuardFailed, Ledger, WriteResult, admin_draft, single_entry_body
from tokenledger.service.ports import Guard
from tokenledger.service.prediction_keys import CLOSED_GUARD, closed_check, prediction_of, stake_put

# DynamoDB's limit on the actions of one TransactWriteItems.
TRANSACTION_ACTIONS_MAX = 100
# A batch of N operations over U distinct users is one transaction of
#     N entry puts + U account updates + 1 idempotency record  <=  TRANSACTION_ACTIONS_MAX.
# U <= N, and the worst case (every operation on a different user) gives 2N + 1 <= 100, so N <= 49.
# The limit is on operations alone, so a client can check it without counting users.
BATCH_OPERATIONS_MAX = (TRANSACTION_ACTIONS_MAX - 1) // 2
# The stored answer of a write lives in one idempotency item (DynamoDB items are <= 400 KB);
# a batch whose answer would not fit (large metadata on many operations) is refused up front.
STORED_RESPONSE_CHARS_MAX = 350_000
# One BatchGetItem reads at most 100 keys.
BALANCES_USERS_MAX = 100

REVERSAL_GUARD = "reversal"
WELCOME_GRANT_ACTOR = "system:post-confirmation"
WELCOME_GRANT_REASON = "welcome grant at sign-up"
WELCOME_GRANT_ROUTE = "cognito:PostConfirmation"
WELCOME_GRANT_KEY = "welcome-grant"
STAKE_CHAIN_STEPS_MAX = 16


@dataclass(frozen=True, slots=True)
class BatchOperation:
    """One line of a batch: what an admin entry would be, on `user_id`."""

    user_id: str
    type: EntryType
    amount: int
    related_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def reversal_guard_pk(entry_id: str) -> str:
    """The guard item that exists once `entry_id` has been reversed (kept forever)."""
    return f"guard|reversal|{entry_id}"


def check_batch_size(operations: int) -> None:
    """422 `batch_too_large` above BATCH_OPERATIONS_MAX operations."""
    if operations > BATCH_OPERATIONS_MAX:
        raise BatchTooLarge(
            f"a batch holds at most {BATCH_OPERATIONS_MAX} operations, this one {operations}",
            operations_max=BATCH_OPERATIONS_MAX,
        )


def check_welcome_grant_tokens(raw: str) -> int:
    """`WELCOME_GRANT_TOKENS` as an int in 0..AMOUNT_MAX; anything else is a deployment error."""
    text = raw.strip()
    if not text.isdigit() or int(text) > AMOUNT_MAX:
        raise InvariantViolation(f"WELCOME_GRANT_TOKENS must be an integer in 0..{AMOUNT_MAX}, not {raw!r}")
    return int(text)


class AdminOperations:
    """The admin use cases on top of one `Ledger` (and so one repository)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    # ------------------------------------------------------------------ batches
    def batch(
        self, *, actor: str, operations: Sequence[BatchOperation], reason: str, scope: IdempotencyScope
    ) -> WriteResult:
        """All operations in one transaction, or none; `{entries (in operation order), balances}`."""
        check_batch_size(len(operations))
        return self.write_operations(operations, actor=actor, reason=reason, scope=scope)

    def write_operations(
        self,
        operations: Sequence[BatchOperation],
        *,
        actor: str,
        reason: str,
        scope: IdempotencyScope,
        idempotency_ttl_s: int | None = IDEMPOTENCY_TTL_S,
    ) -> WriteResult:
        """The batch write: operations on one user fold into one account update, entries consecutive."""
        if not operations:
            raise InvariantViolation("a batch needs at least one operation")
        if len(operations) > BATCH_OPERATIONS_MAX:
            raise InvariantViolation(f"{len(operations)} operations do not fit one transaction")
        indexed: dict[str, list[tuple[int, EntryDraft]]] = defaultdict(list)
        for index, op in enumerate(operations):
            draft = admin_draft(
                actor=actor,
                entry_type=op.type,
                amount=op.amount,
                reason=reason,
                related_id=op.related_id,
                metadata=op.metadata,
            )
            indexed[op.user_id].append((index, draft))

        def plan(accounts: Mapping[str, Account]) -> dict[str, list[EntryDraft]]:
            _refuse_first_overdraft(accounts, indexed)
            return {user_id: [draft for _, draft in drafts] for user_id, drafts in indexed.items()}

        def body(entries: list[Entry], after: dict[str, Account]) -> dict[str, Any]:
            by_user: dict[str, Iterator[Entry]] = {u: iter([e for e in entries if e.user_id == u]) for u in indexed}
            answer = {
                "entries": [next(by_user[op.user_id]).to_api() for op in operations],
                "balances": {user_id: after[user_id].balance for user_id in indexed},
            }
            size = len(json.dumps(answer, separators=(",", ":")))
            if size > STORED_RESPONSE_CHARS_MAX:
                raise BatchTooLarge(
                    f"the batch's answer would be {size} characters, over {STORED_RESPONSE_CHARS_MAX}: "
                    "send less metadata or fewer operations"
                )
            return answer

        return self.ledger.write(plan, users=list(indexed), scope=scope, body=body, idempotency_ttl_s=idempotency_ttl_s)

    # ------------------------------------------------------------------ reversals
    # One retry loop tells apart every refusal of a reversal (already reversed, clawed back, closed
    # prediction, contention) where it is detected; split up, the loop's break/continue would be lost.
    def reverse(self, *, actor: str, entry_id: str, reason: str, scope: IdempotencyScope) -> WriteResult:  # noqa: PLR0912
        """A compensating `reversal` entry, written with the guard that lets it happen once.

        An entry that moved nothing (a chargeback that recovered nothing) is 409
        `nothing_to_reverse`. A Stripe purchase is reversed through its clawback level, like
        a refund: only what refunds and disputes have not taken back yet, and the level moves
        to the whole purchase in the same transaction, so a later refund or dispute takes
        nothing more (docs/stripe.md).
        """
        original = self.ledger.repo.find_entry(entry_id)
        if original is None:
            raise NotFound(f"no entry {entry_id}")
        if original.amount == 0:
            raise NothingToReverse(
                f"entry {entry_id} moved no tokens (amount 0): there is nothing to reverse", entry_id=entry_id
            )
        guard_pk = reversal_guard_pk(entry_id)
        guard = Guard(
            name=REVERSAL_GUARD,
            pk=guard_pk,
            attributes={"kind": "reversal", "entry_id": entry_id, "user_id": original.user_id, "actor": actor},
        )
        prediction_guards: list[Guard] = []
        prediction_id = prediction_of(original.counterparty)
        if prediction_id is not None and self._moves_stake(original):
            # Reversing a commitment (or restoring one) changes what the prediction took in:
            # refused once it is closed, and recorded as a stake item in the same transaction.
            prediction_guards = [
                closed_check(prediction_id),
                stake_put(
                    prediction_id,
                    user_id=original.user_id,
                    amount=original.amount,
                    request=f"reversal|{original.entry_id}",
                ),
            ]
        stripe_purchase = (
            original.type is EntryType.PURCHASE and original.counterparty == STRIPE and original.related_id is not None
        )
        attempts = CLAWBACK_ATTEMPTS_MAX if stripe_purchase else 1
        for _ in range(attempts):
            amount, guards, metadata = -original.amount, [guard, *prediction_guards], {}
            if stripe_purchase and original.related_id is not None:
                level, step_pk = clawback_level(self.ledger.repo, original.related_id)
                due = original.amount - level
                if due <= 0:
                    stored = self.ledger.repo.get_idempotency(scope.pk)
                    if stored is not None:  # this very reversal, asked again with its key
                        return WriteResult(body=scope.check_replay(stored).body, replayed=True)
                    if self.ledger.repo.get_guard(guard_pk) is not None:
                        break
                    raise AlreadyClawedBack(
                        f"Stripe refunds or disputes already took back all {original.amount} tokens of purchase "
                        f"{entry_id}: there is nothing left to reverse",
                        entry_id=entry_id,
                    )
                amount = -due
                if level:
                    metadata = {"clawed_back_before": str(level)}
                step = Guard(
                    name=CLAWBACK_STEP_GUARD,
                    pk=step_pk,
                    attributes={
                        "to": original.amount,
                        "from": level,
                        "reverses": entry_id,
                        "payment_id": original.related_id,
                    },
                )
                guards = [guard, step]
            draft = EntryDraft(
                type=EntryType.REVERSAL,
                amount=amount,
                counterparty=original.counterparty,
                related_id=original.related_id,
                metadata=metadata,
                reverses=original.entry_id,
                reason=reason,
                actor=actor,
            )
            try:
                return self.ledger.write_single(original.user_id, draft, scope=scope, guards=guards)
            except GuardFailed as failed:
                if REVERSAL_GUARD in failed.names:
                    break
                if CLOSED_GUARD in failed.names:
                    raise PredictionClosed(
                        f"entry {entry_id} moved tokens to prediction {prediction_id}, which is closed",
                        prediction_id=prediction_id,
                    ) from None
                continue  # a refund or dispute moved the purchase's clawback level first: read it again
            except InsufficientBalance:
                # Reversing a credit twice fails on the balance before the guard is ever tried.
                if self.ledger.repo.get_guard(guard_pk) is None:
                    raise
                break
        else:
            if stripe_purchase:
                raise ContentionExhausted(f"refunds or disputes of purchase {entry_id} kept moving; retry")
        raise AlreadyReversed(f"entry {entry_id} was already reversed", entry_id=entry_id)

    def _moves_stake(self, entry: Entry) -> bool:
        """Whether reversing `entry` changes a prediction's pool: a commitment, or a reversal chain ending in one."""
        for _ in range(STAKE_CHAIN_STEPS_MAX):
            if entry.type is EntryType.COMMITMENT:
                return True
            if entry.type is not EntryType.REVERSAL or entry.reverses is None:
                return False
            found = self.ledger.repo.find_entry(entry.reverses)
            if found is None:
                return False
            entry = found
        raise InvariantViolation(f"a reversal chain longer than {STAKE_CHAIN_STEPS_MAX} entries")

    # ------------------------------------------------------------------ reads
    def balances(self, user_ids: Sequence[str]) -> dict[str, Any]:
        """Up to 100 users in one BatchGetItem, in the order asked; unknown users are zero."""
        if not user_ids:
            raise ValidationFailed("user_ids: name at least one user", errors=[{"loc": ["query", "user_ids"]}])
        if len(user_ids) > BALANCES_USERS_MAX:
            raise ValidationFailed(
                f"user_ids: at most {BALANCES_USERS_MAX} users per request, not {len(user_ids)}",
                errors=[{"loc": ["query", "user_ids"], "type": "too_long"}],
            )
        unique = list(dict.fromkeys(user_ids))
        found = self.ledger.repo.get_accounts(unique)
        rows = []
        for user_id in unique:
            account = found.get(user_id) or Account(user_id=user_id)
            rows.append({"user_id": user_id, "balance": account.balance, "version": account.version})
        return {"balances": rows, "total": sum(row["balance"] for row in rows)}

    # ------------------------------------------------------------------ sign-up
    def open_account(self, user_id: str, *, welcome_grant_tokens: int) -> None:
        """Open the account at sign-up, with a one-time welcome `grant` when configured.

        Idempotent: the grant's idempotency record is keyed on the user and kept forever, so a
        re-delivered trigger grants once; without a grant, an account that exists is left as is.
        Both through the one write path. Without a grant it is one transaction and no read: the
        account is assumed new, and if it is not the refusal returns it as it is (already open).
        """
        if welcome_grant_tokens == 0:
            self.ledger.write(
                lambda _accounts: {user_id: []},
                users=[user_id],
                scope=None,
                body=lambda _entries, _after: {},
                accounts_read={user_id: Account(user_id=user_id)},
            )
            return
        draft = EntryDraft(
            type=EntryType.GRANT,
            amount=welcome_grant_tokens,
            counterparty="admin",
            reason=WELCOME_GRANT_REASON,
            actor=WELCOME_GRANT_ACTOR,
        )
        # The hash leaves out the amount: a changed setting must not turn a re-delivery into a second grant.
        scope = IdempotencyScope(
            caller=user_id,
            route=WELCOME_GRANT_ROUTE,
            key=WELCOME_GRANT_KEY,
            request_hash=request_hash({"user_id": user_id}),
        )
        self.ledger.write(
            lambda _accounts: {user_id: [draft]},
            users=[user_id],
            scope=scope,
            body=single_entry_body(user_id),
            idempotency_ttl_s=None,
        )


def _refuse_first_overdraft(accounts: Mapping[str, Account], indexed: dict[str, list[tuple[int, EntryDraft]]]) -> None:
    """Raise `InsufficientBalance` for the first operation (by index) that would overdraw its user."""
    failures: list[tuple[int, str, int, int]] = []  # (index, user, balance before it, shortfall)
    for user_id, drafts in indexed.items():
        balance = accounts[user_id].balance
        for index, draft in drafts:
            if balance + draft.amount < 0:
                failures.append((index, user_id, balance, -(balance + draft.amount)))
                break
            balance += draft.amount
    if failures:
        index, user_id, balance, shortfall = min(failures)
        raise InsufficientBalance(
            f"operation {index} ({user_id}) needs {shortfall} more tokens than the balance {balance} "
            "it would meet; nothing was written",
            balance=balance,
            shortfall=shortfall,
            index=index,
            user_id=user_id,
        )
