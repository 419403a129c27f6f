"""A prediction as the ledger sees it: close, settle (pay out or refund), exactly once.

- **Close** puts the closed marker; every commitment's transaction checks it is absent, so
  nothing is committed after the close (`Ledger.commit`).
- **Settle** closes first, then reads what the prediction took in from its stake items (keys
  only the service writes), refuses payouts beyond it (`pool_exceeded`) unless a house
  contribution covers them, stores the plan (one item per chunk) and the settlement item
  (put-if-absent: one settlement per prediction), and sends one message to the queue.
- **The worker** writes the plan chunk by chunk, each chunk one transaction through the one
  write path with an idempotency record keyed on (settlement id, chunk), and records progress
  with a conditional update (`chunks_done = n -> n + 1`), so a crash anywhere resumes without
  paying anyone twice. The settlement item reaching `completed` is the `Settlement Completed`
  fact (`tokenledger.service.events.settlement_completed_events`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tokenledger.domain.errors import (
    AlreadySettled,
    ContentionExhausted,
    IdempotencyKeyReused,
    InvariantViolation,
    LedgerError,
    NotFound,
    PoolExceeded,
    ValidationFailed,
)
from tokenledger.domain.model import AMOUNT_MAX, EntryType, check_amount
from tokenledger.service.admin import BATCH_OPERATIONS_MAX, AdminOperations
from tokenledger.service.idempotency import IdempotencyScope, request_hash
from tokenledger.service.ledger import GuardFailed, WriteResult, admin_draft
from tokenledger.service.ports import Clock, Guard, NewId
from tokenledger.service.prediction_keys import SETTLEMENT_GUARD, settlement_put

logger = logging.getLogger(__name__)

OUTCOME_RESOLVED = "resolved"
OUTCOME_CANCELLED = "cancelled"
# A settlement's payouts arrive in one request body (API Gateway: 10 MB, about 40 bytes a payout).
SETTLEMENT_PAYOUTS_MAX = 100_000
SETTLEMENT_CHUNK_MAX = BATCH_OPERATIONS_MAX  # payouts per transaction (docs/admin.md, the batch limit)
SETTLEMENT_ROUTE = "settlement"
SETTLEMENT_ACTOR_PREFIX = "settlement:"
# The worker stops taking chunks this long before its invocation's deadline, then hands over.
WORKER_MARGIN_MS = 10_000
CHUNKS_PER_MESSAGE_MAX = 2_000
STATUSES = ("pending", "running", "completed", "failed")


class PredictionStore(Protocol):
    def close(self, prediction_id: str, *, actor: str, now: str) -> dict[str, Any]: ...
    def stakes(self, prediction_id: str) -> Iterable[tuple[str, int]]: ...
    def put_plan(self, prediction_id: str, settlement_id: str, chunks: Sequence[Sequence[tuple[str, int]]]) -> None: ...
    def plan_chunk(self, prediction_id: str, settlement_id: str, index: int) -> list[tuple[str, int]]: ...
    def settlement(self, prediction_id: str) -> dict[str, Any] | None: ...
    def advance(self, prediction_id: str, *, chunk: int, tokens: int, entries: int, now: str) -> bool: ...
    def finish(self, prediction_id: str, *, status: str, now: str, detail: str | None = None) -> bool: ...


class SettlementQueue(Protocol):
    def send(self, message: dict[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class SettlementRequest:
    outcome: str
    reason: str
    payouts: Sequence[tuple[str, int]] = ()
    house_contribution: int = 0

    def canonical(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "reason": self.reason,
            "payouts": [[u, a] for u, a in self.payouts],
            "house_contribution": self.house_contribution,
        }


def check_plan(request: SettlementRequest) -> None:
    """The whole plan, before anything is written: 422 naming the first bad payout."""
    if request.outcome not in (OUTCOME_RESOLVED, OUTCOME_CANCELLED):
        raise ValidationFailed("outcome must be resolved or cancelled", errors=[{"loc": ["body", "outcome"]}])
    if request.outcome == OUTCOME_CANCELLED and (request.payouts or request.house_contribution):
        raise ValidationFailed(
            "a cancelled prediction refunds every commitment: send no payouts and no house_contribution",
            errors=[{"loc": ["body", "payouts"], "type": "not_allowed"}],
        )
    if request.outcome == OUTCOME_RESOLVED and not request.payouts:
        raise ValidationFailed("a resolved prediction needs payouts", errors=[{"loc": ["body", "payouts"]}])
    if len(request.payouts) > SETTLEMENT_PAYOUTS_MAX:
        raise ValidationFailed(
            f"at most {SETTLEMENT_PAYOUTS_MAX} payouts per settlement, not {len(request.payouts)}",
            errors=[{"loc": ["body", "payouts"], "type": "too_long"}],
        )
    seen: dict[str, int] = {}
    for index, (user_id, amount) in enumerate(request.payouts):
        try:
            check_amount(amount, field_name=f"payouts[{index}].amount")
        except ValidationFailed as refused:
            raise ValidationFailed(refused.detail, errors=[{"loc": ["body", "payouts", index, "amount"]}]) from None
        if user_id in seen:
            raise ValidationFailed(
                f"payouts[{index}] names {user_id} again (first at {seen[user_id]}): one payout per user",
                errors=[{"loc": ["body", "payouts", index, "user_id"], "type": "duplicate"}],
            )
        seen[user_id] = index
    if request.house_contribution and not 0 <= request.house_contribution <= AMOUNT_MAX:
        raise ValidationFailed("house_contribution out of range", errors=[{"loc": ["body", "house_contribution"]}])


def chunked(ops: Sequence[tuple[str, int]], size: int | None = None) -> list[list[tuple[str, int]]]:
    size = size or SETTLEMENT_CHUNK_MAX
    return [list(ops[start : start + size]) for start in range(0, len(ops), size)]


def refunds_from_stakes(stakes: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    """Each user's net stake (commitments minus their reversals), users in sorted order, zeros left out."""
    net: dict[str, int] = defaultdict(int)
    for user_id, amount in stakes:
        net[user_id] += amount
    for user_id, amount in net.items():
        if amount < 0:
            raise InvariantViolation(f"{user_id} has a negative net stake {amount}")
    return [(u, net[u]) for u in sorted(net) if net[u] > 0]


def settlement_view(record: dict[str, Any]) -> dict[str, Any]:
    """The API's settlement: the stored item without its keys and internals."""
    hidden = {"pk", "sk", "plan_hash", "request_hash"}
    return {k: v for k, v in sorted(record.items()) if k not in hidden}


class Predictions:
    def __init__(
        self,
        admin: AdminOperations,
        store: PredictionStore,
        queue: SettlementQueue | None,
        *,
        clock: Clock,
        new_id: NewId,
    ) -> None:
        self.admin = admin
        self.store = store
        self.queue = queue
        self._clock = clock
        self._new_id = new_id

    # ------------------------------------------------------------------ close
    def close(self, prediction_id: str, *, actor: str) -> dict[str, Any]:
        marker = self.store.close(prediction_id, actor=actor, now=self._clock())
        return {"prediction_id": prediction_id, "closed": True, "closed_at": marker["closed_at"]}

    def taken_in(self, prediction_id: str) -> int:
        return sum(amount for _, amount in self.store.stakes(prediction_id))

    # ------------------------------------------------------------------ settle
    def settle(
        self, prediction_id: str, request: SettlementRequest, *, actor: str, scope: IdempotencyScope
    ) -> WriteResult:
        check_plan(request)
        plan_hash = request_hash({"prediction_id": prediction_id, **request.canonical()})
        existing = self.store.settlement(prediction_id)
        if existing is not None:
            return self._existing(existing, plan_hash, scope)
        closed = self.store.close(prediction_id, actor=actor, now=self._clock())
        taken_in = self.taken_in(prediction_id)
        if request.outcome == OUTCOME_RESOLVED:
            ops = list(request.payouts)
            payouts_total = sum(a for _, a in ops)
            if payouts_total > taken_in + request.house_contribution:
                shortfall = payouts_total - taken_in - request.house_contribution
                house = request.house_contribution
                raise PoolExceeded(
                    f"payouts of {payouts_total} exceed the {taken_in} prediction {prediction_id} took in"
                    + (f" plus the house contribution of {house}" if house else "")
                    + f" by {shortfall}",
                    taken_in=taken_in,
                    payouts_total=payouts_total,
                    house_contribution=request.house_contribution,
                    shortfall=shortfall,
                )
        else:
            ops = refunds_from_stakes(self.store.stakes(prediction_id))
            payouts_total = sum(a for _, a in ops)
        settlement_id = f"stl_{self._new_id()}"
        chunks = chunked(ops)
        self.store.put_plan(prediction_id, settlement_id, chunks)
        now = self._clock()
        record = {
            "settlement_id": settlement_id,
            "prediction_id": prediction_id,
            "outcome": request.outcome,
            "reason": request.reason,
            "actor": actor,
            "status": "pending" if chunks else "completed",
            "taken_in": taken_in,
            "house_contribution": request.house_contribution,
            "payouts_total": payouts_total,
            "payouts": len(ops),
            "paid_total": 0,
            "entries_written": 0,
            "chunks_total": len(chunks),
            "chunks_done": 0,
            "closed_at": closed["closed_at"],
            "created_at": now,
            "updated_at": now,
            "plan_hash": plan_hash,
        }
        if not chunks:
            record["completed_at"] = now
            record["finished_at"] = now
        body = settlement_view(record)
        try:
            # The settlement item and the idempotency record, each put only if absent, in one
            # transaction of the one write path (no account moves; a conflict is tried again).
            created = self._record_answer(scope, body, guards=[settlement_put(prediction_id, record)])
        except GuardFailed as refused:
            existing = self.store.settlement(prediction_id)
            if refused.names != [SETTLEMENT_GUARD] or existing is None:
                raise InvariantViolation(f"settlement refused by {refused.names}") from None
            return self._existing(existing, plan_hash, scope)
        self._kick(prediction_id, created.body.get("settlement_id") if created.replayed else settlement_id)
        return created

    def _record_answer(
        self, scope: IdempotencyScope, body: dict[str, Any], *, guards: Sequence[Guard] = ()
    ) -> WriteResult:
        """Store this key's answer (with `guards`) through the one write path; a replay if it is stored already."""
        return self.admin.ledger.write(
            lambda _accounts: {}, users=[], scope=scope, body=lambda _entries, _after: body, guards=guards
        )

    def _existing(self, existing: dict[str, Any], plan_hash: str, scope: IdempotencyScope) -> WriteResult:
        """A second request for a settled prediction: the same plan is answered, another refused."""
        stored = self.admin.ledger.repo.get_idempotency(scope.pk)
        if stored is not None:
            if stored.request_hash != scope.request_hash:
                raise IdempotencyKeyReused(
                    "this Idempotency-Key was already used with a different request on this route"
                )
            self._kick(existing["prediction_id"], existing["settlement_id"])
            return WriteResult(body=stored.body, replayed=True)
        if existing.get("plan_hash") != plan_hash:
            raise AlreadySettled(
                f"prediction {existing['prediction_id']} already has settlement {existing['settlement_id']} "
                "with another plan; a prediction is settled once",
                settlement_id=existing["settlement_id"],
            )
        # The same plan under a new key: this key's answer is stored like a first answer, so its
        # own retries replay it (same body, `Idempotent-Replayed`) instead of the progress of the day.
        answer = self._record_answer(scope, settlement_view(existing))
        self._kick(existing["prediction_id"], existing["settlement_id"])
        return answer

    def _kick(self, prediction_id: str, settlement_id: Any) -> None:
        """(Re)send the work message; harmless when the work is done or under way (the worker is idempotent)."""
        if self.queue is None:
            raise InvariantViolation("settlements need SETTLEMENT_QUEUE_URL")
        record = self.store.settlement(prediction_id)
        if record is None or record.get("status") in ("completed", "failed"):
            return
        self.queue.send({"prediction_id": prediction_id, "settlement_id": str(settlement_id)})

    def settlement(self, prediction_id: str) -> dict[str, Any]:
        record = self.store.settlement(prediction_id)
        if record is None:
            raise NotFound(f"prediction {prediction_id} has no settlement")
        return settlement_view(record)

    # ------------------------------------------------------------------ the worker
    def chunk_scope(self, settlement_id: str, index: int, ops: Sequence[tuple[str, int]]) -> IdempotencyScope:
        return IdempotencyScope(
            caller=settlement_id,
            route=SETTLEMENT_ROUTE,
            key=f"chunk-{index:06d}",
            request_hash=request_hash({"settlement_id": settlement_id, "chunk": index, "ops": [list(o) for o in ops]}),
        )

    def write_chunk(
        self, record: dict[str, Any], index: int, ops: Sequence[tuple[str, int]], *, kind: EntryType, actor: str
    ) -> None:
        """One chunk, one transaction, through the one write path; its idempotency record is kept forever.

        Its stored answer is small (entry ids, not entries): 49 entries would make a 20 KB record.
        """
        settlement_id = str(record["settlement_id"])
        prediction_id = str(record["prediction_id"])
        drafts = {
            user_id: [
                admin_draft(
                    actor=actor,
                    entry_type=kind,
                    amount=amount,
                    reason=str(record["reason"]),
                    related_id=prediction_id,
                    metadata={"settlement_id": settlement_id},
                )
            ]
            for user_id, amount in ops
        }
        if len(drafts) != len(ops):
            raise InvariantViolation(f"chunk {index} of {settlement_id} names a user twice")
        self.admin.ledger.write(
            lambda _accounts: drafts,
            users=list(drafts),
            scope=self.chunk_scope(settlement_id, index, ops),
            body=lambda entries, _after: {
                "settlement_id": settlement_id,
                "chunk": index,
                "entry_ids": [e.entry_id for e in entries],
            },
            idempotency_ttl_s=None,
        )

    def work(self, prediction_id: str, settlement_id: str, *, remaining_ms: Callable[[], int]) -> str:
        """Write chunks from the recorded progress on while time lasts; the status it leaves.

        Hands over to a new message when time runs short. A crash leaves the message to be
        delivered again; the progress item says where to resume, and a chunk written just
        before the crash is replayed from its idempotency record, never paid again.
        """
        record = self.store.settlement(prediction_id)
        if record is None or record.get("settlement_id") != settlement_id:
            logger.warning("settlement message for an unknown settlement", extra={"settlement_id": settlement_id})
            return "unknown"
        if record["status"] in ("completed", "failed"):
            return str(record["status"])
        kind = EntryType.PAYOUT if record["outcome"] == OUTCOME_RESOLVED else EntryType.REFUND
        actor = f"{SETTLEMENT_ACTOR_PREFIX}{settlement_id}"
        index = int(record["chunks_done"])
        total = int(record["chunks_total"])
        for _ in range(CHUNKS_PER_MESSAGE_MAX):
            if index >= total or remaining_ms() < WORKER_MARGIN_MS:
                break
            ops = self.store.plan_chunk(prediction_id, settlement_id, index)
            try:
                self.write_chunk(record, index, ops, kind=kind, actor=actor)
            except ContentionExhausted:
                raise  # transient: the message comes back and the chunk is tried again
            except LedgerError as refused:  # the plan itself is wrong: stop, say why
                detail = f"chunk {index}: {refused.detail}"
                self.store.finish(prediction_id, status="failed", now=self._clock(), detail=detail)
                return "failed"
            advanced = self.store.advance(
                prediction_id, chunk=index, tokens=sum(a for _, a in ops), entries=len(ops), now=self._clock()
            )
            if advanced:
                index += 1
            else:  # another delivery of this message got there first: continue from its progress
                latest = self.store.settlement(prediction_id)
                index = int(latest["chunks_done"]) if latest else total
        if index >= total:
            self.store.finish(prediction_id, status="completed", now=self._clock())
            return "completed"
        if self.queue is None:
            raise InvariantViolation("settlements need SETTLEMENT_QUEUE_URL")
        self.queue.send({"prediction_id": prediction_id, "settlement_id": settlement_id})
        return "running"
