"""The operations a client runs, chosen from the workload's mix through one table, `OPERATIONS`.

Each maker builds one `Op` from a client's seeded choices (`Chooser`), or returns None when
there is nothing for it to act on yet (then the client commits instead). The Stripe makers
live in `infra.chaos.stripe`; every kind of the mix names its maker here.
"""

from __future__ import annotations

import json
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from infra.chaos import stripe
from infra.chaos.model import Op, Request, admin_claims, user_claims
from infra.chaos.workload import Workload
from infra.template import LOCAL_REGION

SETTLE_BODY = {"reason": "chaos: voided", "outcome": "cancelled"}
BATCH_OPERATIONS = 4
REPEATABLE_RECENT_MAX = 50  # a client's own recent acknowledged requests it may replay
# Audits and repairs read an account's whole chain: on hot accounts their cost grows with the
# run, so a long run would spend most of its time in them. A few per client cover the race.
WHOLE_CHAIN_READS_PER_CLIENT_MAX = 40


class Chooser:
    """One client's seeded choices: which operation next, on whom, with which key."""

    def __init__(self, number: int, workload: Workload) -> None:
        self.number = number
        self.workload = workload
        self.rng = random.Random(f"{workload.seed}:ops:{number}")
        self.repeatable: deque[Op] = deque(maxlen=REPEATABLE_RECENT_MAX)
        self.versions: dict[str, int] = {}  # last version this client saw per user (for If-Match)
        self._keys = 0
        self._whole_chain_reads = 0  # audits and repairs sent (each reads the account's whole chain)

    def next_op(self, number: int) -> Op:
        kind = self.rng.choices(self.workload.kinds, self.workload.weights)[0]
        op = OPERATIONS[kind](self, number)
        if op is None:  # nothing to repeat yet: a plain commitment instead
            op = commitment(self, number)
        return op

    def learn(self, op: Op) -> None:
        """What a definite answer tells the client: versions for If-Match, requests it may repeat."""
        body = op.body if isinstance(op.body, dict) else {}
        if op.kind == "balance" and op.ok:
            self.versions[op.user_id] = int(body.get("version", 0))
        for entry in op.entries():
            self.versions[entry["user_id"]] = max(self.versions.get(entry["user_id"], 0), int(entry["seq"]))

    def remember(self, op: Op) -> None:
        if op.ok and op.key is not None and op.kind not in ("replay", "key_reuse"):
            self.repeatable.append(op)

    def key(self) -> str:
        self._keys += 1
        return f"{self.workload.run_id}-c{self.number}-{self._keys}"

    def user(self) -> str:
        return self.rng.choice(self.workload.users)

    def prediction(self) -> str:
        return self.rng.choice(self.workload.predictions)

    def whole_chain_read(self) -> bool:
        """Whether this client may still send an audit or a repair (counts it if so)."""
        if self._whole_chain_reads >= WHOLE_CHAIN_READS_PER_CLIENT_MAX:
            return False
        self._whole_chain_reads += 1
        return True


Maker = Callable[[Chooser, int], Op | None]


def commitment(c: Chooser, number: int, *, if_match: bool = False) -> Op:
    user, key = c.user(), c.key()
    amount = c.rng.randint(1, 60)
    body = {"prediction_id": c.prediction(), "amount": amount, "metadata": {"chaos_op": key}}
    headers = {}
    if if_match:
        headers["if-match"] = f'"{c.versions.get(user, 0)}"'
    request = Request("POST", "/v1/commitments", user_claims(user), body, key, headers)
    kind = "commitment_if_match" if if_match else "commitment"
    return Op(c.number, number, kind, user, request, key, amount=-amount)


def commitment_if_match(c: Chooser, number: int) -> Op:
    return commitment(c, number, if_match=True)


def commitment_settled(c: Chooser, number: int) -> Op:
    """A commitment to a prediction that gets closed and settled during the run."""
    op = commitment(c, number)
    op.request.body["prediction_id"] = c.rng.choice(c.workload.settled)
    op.kind = "commitment_settled"
    return op


def close(c: Chooser, number: int) -> Op:
    prediction = c.rng.choice(c.workload.settled)
    request = Request("POST", f"/v1/admin/predictions/{prediction}/close", admin_claims(c.number))
    return Op(c.number, number, "close", f"admin-{c.number}", request, None)


def settle(c: Chooser, number: int) -> Op:
    prediction, key = c.rng.choice(c.workload.settled), c.key()
    path = f"/v1/admin/predictions/{prediction}/settlement"
    request = Request("POST", path, admin_claims(c.number), dict(SETTLE_BODY), key)
    return Op(c.number, number, "settle", f"admin-{c.number}", request, key)


def _admin_entry(c: Chooser, number: int, kind: str, amount: int, related: str | None) -> Op:
    user, key = c.user(), c.key()
    body: dict[str, Any] = {
        "type": kind,
        "amount": amount,
        "reason": f"chaos {kind}",
        "metadata": {"chaos_op": key},
    }
    if related is not None:
        body["related_id"] = related
    request = Request("POST", f"/v1/admin/accounts/{user}/entries", admin_claims(c.number), body, key)
    return Op(c.number, number, kind, user, request, key, amount=amount)


def grant(c: Chooser, number: int) -> Op:
    return _admin_entry(c, number, "grant", c.rng.randint(1, 120), None)


def payout(c: Chooser, number: int) -> Op:
    return _admin_entry(c, number, "payout", c.rng.randint(1, 150), c.prediction())


def refund(c: Chooser, number: int) -> Op:
    return _admin_entry(c, number, "refund", c.rng.randint(1, 60), c.prediction())


def adjustment(c: Chooser, number: int) -> Op:
    amount = c.rng.randint(1, 80) * c.rng.choice((1, -1))
    return _admin_entry(c, number, "adjustment", amount, None)


def replay(c: Chooser, number: int) -> Op | None:
    """The same request again, same key: must answer the original status and body, moving nothing."""
    candidates = [o for o in c.repeatable if not o.kind.startswith("stripe")]
    if not candidates:
        return None
    origin = c.rng.choice(candidates)
    return Op(c.number, number, "replay", origin.user_id, origin.request, origin.key, origin=origin)


def key_reuse(c: Chooser, number: int) -> Op | None:
    """The same key with another body: 422 idempotency_key_reused, moving nothing."""
    candidates = [o for o in c.repeatable if o.kind in ("commitment", "grant", "payout", "refund", "adjustment")]
    if not candidates:
        return None
    origin = c.rng.choice(candidates)
    body = json.loads(json.dumps(origin.request.body))
    body["amount"] = body["amount"] + 1 if body["amount"] != -1 else -2
    request = Request(
        origin.request.method, origin.request.path, origin.request.claims, body, origin.key, origin.request.headers
    )
    return Op(c.number, number, "key_reuse", origin.user_id, request, origin.key, origin=origin)


def balance(c: Chooser, number: int) -> Op:
    user = c.user()
    return Op(c.number, number, "balance", user, Request("GET", "/v1/balance", user_claims(user)), None)


def history(c: Chooser, number: int) -> Op:
    user = c.user()
    return Op(c.number, number, "history", user, Request("GET", "/v1/transactions", user_claims(user)), None)


def admin_balances(c: Chooser, number: int) -> Op:
    users = ",".join(c.workload.users)
    request = Request("GET", "/v1/admin/balances", admin_claims(c.number), query={"user_ids": users})
    return Op(c.number, number, "admin_balances", c.workload.users[0], request, None)


def batch(c: Chooser, number: int) -> Op:
    key = c.key()
    operations = []
    users = c.rng.sample(c.workload.users, k=min(len(c.workload.users), BATCH_OPERATIONS))
    for index, user in enumerate(users):
        kind = c.rng.choice(("grant", "payout", "adjustment"))
        amount = c.rng.randint(1, 40)
        if kind == "adjustment" and c.rng.random() < 0.5:
            amount = -amount
        operation: dict[str, Any] = {
            "user_id": user,
            "type": kind,
            "amount": amount,
            "metadata": {"chaos_op": key, "chaos_index": str(index)},
        }
        if kind == "payout":
            operation["related_id"] = c.prediction()
        operations.append(operation)
    body = {"operations": operations, "reason": "chaos batch"}
    request = Request("POST", "/v1/admin/batches", admin_claims(c.number), body, key)
    return Op(c.number, number, "batch", users[0], request, key, amount=sum(o["amount"] for o in operations))


def reversal(c: Chooser, number: int) -> Op | None:
    """Reverse a recent entry of any client (sometimes one already reversed: 409 already_reversed)."""
    written = c.workload.recent_entries()
    if not written:
        return None
    entry = c.rng.choice(written)
    key = c.key()
    request = Request(
        "POST",
        f"/v1/admin/entries/{entry['entry_id']}/reversal",
        admin_claims(c.number),
        {"reason": f"chaos reversal {key}"},
        key,
    )
    return Op(c.number, number, "reversal", entry["user_id"], request, key, amount=-int(entry["amount"]))


def audit(c: Chooser, number: int) -> Op | None:
    """An admin audits a hot account while others write to it: never a false inconsistency."""
    if not c.whole_chain_read():
        return None
    user = c.user()
    request = Request("GET", f"/v1/admin/accounts/{user}/audit", admin_claims(c.number))
    return Op(c.number, number, "audit", user, request, None)


def repair(c: Chooser, number: int) -> Op | None:
    """An admin repairs a hot account while others write to it: nothing to repair, nothing changed."""
    if not c.whole_chain_read():
        return None
    user = c.user()
    body = {"reason": "chaos: repair under load"}
    request = Request("POST", f"/v1/admin/accounts/{user}/repair", admin_claims(c.number), body, c.key())
    return Op(c.number, number, "repair", user, request, None)


def signup(c: Chooser, number: int) -> Op:
    """Cognito confirms a sign-up of a hot account (again: triggers are redelivered): one welcome grant."""
    user = c.user()
    event = {
        "version": "1",
        "region": LOCAL_REGION,
        "userPoolId": f"{LOCAL_REGION}_chaos",
        "userName": user,
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "chaos"},
        "triggerSource": "PostConfirmation_ConfirmSignUp",
        "request": {"userAttributes": {"sub": user, "email": f"{user}@example.com", "email_verified": "true"}},
        "response": {},
    }
    request = Request("INVOKE", c.workload.features.signup or "", None, trigger=event)
    return Op(c.number, number, "signup", user, request, None)


# Every kind of the workload's mix, and the maker that builds it: the one place a kind is bound.
OPERATIONS: dict[str, Maker] = {
    "commitment": commitment,
    "commitment_if_match": commitment_if_match,
    "grant": grant,
    "payout": payout,
    "refund": refund,
    "adjustment": adjustment,
    "replay": replay,
    "key_reuse": key_reuse,
    "balance": balance,
    "history": history,
    "batch": batch,
    "reversal": reversal,
    "stripe_purchase": stripe.purchase,
    "stripe_refund": stripe.refund,
    "stripe_dispute": stripe.dispute,
    "stripe_redelivery": stripe.redelivery,
    "audit": audit,
    "repair": repair,
    "signup": signup,
    "admin_balances": admin_balances,
    "commitment_settled": commitment_settled,
    "close": close,
    "settle": settle,
}
