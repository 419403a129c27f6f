"""Where a prediction's own items live, and the guards that put them in the write path.

All of them sit in the predictions table under `pk = prediction|<prediction_id>`. Prediction
ids are the user's words, but they match `ID_PATTERN` (no `|`), and only the service writes
this table: a user can name a prediction anything and still never create, or collide with,
one of these keys. Items per prediction:

- `closed`: the closed marker. A commitment's transaction holds a `ConditionCheck` that it
  does not exist, so nothing is committed after the close.
- `stake|<user_id>|<request>`: one per commitment (amount > 0) and one per reversal of a
  commitment (amount < 0), written in the same transaction as the entry. Their sum is what
  the prediction took in, read by a strongly consistent `Query` on keys only the service writes
  (never through the eventually consistent, user-named `by-related-id` index).
- `settlement`: the one settlement (put-if-absent: exactly once per prediction) and its progress.
- `plan|<settlement_id>|<chunk>`: the settlement's plan, one item per chunk (one transaction).
"""

from __future__ import annotations

import hashlib
from typing import Any

from tokenledger.service.ports import Guard

PREDICTION_PK_PREFIX = "prediction|"
CLOSED_SK = "closed"
STAKE_SK_PREFIX = "stake|"
SETTLEMENT_SK = "settlement"
PLAN_SK_PREFIX = "plan|"
CLOSED_GUARD = "prediction_closed"
STAKE_GUARD = "stake"
SETTLEMENT_GUARD = "settlement"
COMMITMENT_COUNTERPARTY_PREFIX = "prediction:"


def prediction_pk(prediction_id: str) -> str:
    return f"{PREDICTION_PK_PREFIX}{prediction_id}"


def plan_sk(settlement_id: str, chunk: int) -> str:
    return f"{PLAN_SK_PREFIX}{settlement_id}|{chunk:06d}"


def closed_check(prediction_id: str) -> Guard:
    """A `ConditionCheck` that the prediction is not closed (no item is written)."""
    return Guard(name=CLOSED_GUARD, pk=prediction_pk(prediction_id), sk=CLOSED_SK, check_only=True)


def stake_put(prediction_id: str, *, user_id: str, amount: int, request: str) -> Guard:
    """What one commitment (amount > 0) or one reversal of it (amount < 0) adds to the pool.

    `request` names the write uniquely (the idempotency record's key, or the reversed entry),
    so a retried transaction puts the same item and a replay puts none.
    """
    digest = hashlib.sha256(request.encode()).hexdigest()[:32]
    return Guard(
        name=STAKE_GUARD,
        pk=prediction_pk(prediction_id),
        sk=f"{STAKE_SK_PREFIX}{user_id}|{digest}",
        attributes={"user_id": user_id, "amount": amount},
    )


def prediction_of(counterparty: str) -> str | None:
    """`p-9` for the counterparty `prediction:p-9`, else None."""
    if counterparty.startswith(COMMITMENT_COUNTERPARTY_PREFIX):
        return counterparty[len(COMMITMENT_COUNTERPARTY_PREFIX) :]
    return None


def settlement_put(prediction_id: str, record: dict[str, Any]) -> Guard:
    """The settlement item, put only if absent: one settlement per prediction."""
    return Guard(name=SETTLEMENT_GUARD, pk=prediction_pk(prediction_id), sk=SETTLEMENT_SK, attributes=record)
