"""The shared, seeded description of a run: what the template serves, the users, the operation mix.

Which operation a kind of the mix runs is declared once, in `infra.chaos.operations.OPERATIONS`.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

from infra.api import LocalApi
from infra.chaos.model import Op
from infra.template import Stack

HOT_ACCOUNTS = 6
PREDICTIONS = 5
SETTLED_PREDICTIONS = 3
SHARED_RECENT_MAX = 60  # recent entries / purchases any client may reverse, redeliver or refund


@dataclass
class Features:
    """What the template serves today; the workload drives all of it."""

    batches: bool
    reversals: bool
    stripe: bool
    audit: bool  # the per-account audit and repair routes
    balances: bool  # the admin balance summary
    signup: str | None  # the Cognito PostConfirmation function's logical id
    reconcile: str | None  # the function's logical id
    predictions: bool = False  # close and settle (the settlement worker behind the queue)

    @classmethod
    def of(cls, stack: Stack, api: LocalApi) -> Features:
        reconcile = next((f for f in stack.functions() if "reconcil" in f.lower()), None)
        signup = next((f for f in stack.functions() if "postconfirmation" in f.lower()), None)
        return cls(
            batches=api.match("POST", "/v1/admin/batches") is not None,
            reversals=api.match("POST", "/v1/admin/entries/x/reversal") is not None,
            stripe=api.match("POST", "/v1/webhooks/stripe") is not None,
            audit=api.match("POST", "/v1/admin/accounts/x/repair") is not None
            and api.match("GET", "/v1/admin/accounts/x/audit") is not None,
            balances=api.match("GET", "/v1/admin/balances") is not None,
            signup=signup,
            reconcile=reconcile,
            predictions=api.match("POST", "/v1/admin/predictions/x/settlement") is not None,
        )

    def names(self) -> list[str]:
        found = ["commitments", "admin entries"]
        found += [n for n, on in (("batches", self.batches), ("reversals", self.reversals)) if on]
        found += ["stripe"] if self.stripe else []
        found += ["audit and repair"] if self.audit else []
        found += ["sign-up trigger"] if self.signup else []
        found += ["reconciliation"] if self.reconcile else []
        found += ["close and settle predictions"] if self.predictions else []
        return found


class Workload:
    """The shared, seeded description of a run: users, admins, the operation mix."""

    def __init__(
        self, seed: int, stack: Stack, features: Features, stripe_secret: str | None, accounts: int = HOT_ACCOUNTS
    ) -> None:
        self.seed = seed
        self.stack = stack
        self.features = features
        self.stripe_secret = stripe_secret
        self.run_id = f"r{seed}"
        self.users = [f"u-{self.run_id}-{i}" for i in range(accounts)]
        self.predictions = [f"p-{self.run_id}-{i}" for i in range(PREDICTIONS)]
        # Predictions that get closed and settled (cancelled) while users commit to them. Only
        # commitments (and reversals) touch them, so their refunds must equal what each user put in.
        self.settled = [f"p-{self.run_id}-s{i}" for i in range(SETTLED_PREDICTIONS)] if features.predictions else []
        self.packages = _catalog_package_ids()
        mix: list[tuple[str, int]] = [
            ("commitment", 30),
            ("commitment_if_match", 6),
            ("grant", 16),
            ("payout", 6),
            ("refund", 3),
            ("adjustment", 5),
            ("replay", 8),
            ("key_reuse", 2),
            ("balance", 4),
            ("history", 2),
        ]
        if features.batches:
            mix.append(("batch", 5))
        if features.reversals:
            mix.append(("reversal", 4))
        if features.stripe and stripe_secret:
            mix += [("stripe_purchase", 8), ("stripe_refund", 3), ("stripe_dispute", 1), ("stripe_redelivery", 4)]
        if features.audit:
            mix += [("audit", 2), ("repair", 1)]
        if features.signup:
            mix.append(("signup", 2))
        if features.balances:
            mix.append(("admin_balances", 2))
        if features.predictions:
            mix += [("commitment_settled", 8), ("close", 1), ("settle", 1)]
        self.kinds = [k for k, _ in mix]
        self.weights = [w for _, w in mix]
        # What every client may act on next: recent entries (to reverse) and purchases (to
        # redeliver or refund), so two clients can race on the same entry or payment.
        self._lock = threading.Lock()
        self._entries: deque[dict[str, Any]] = deque(maxlen=SHARED_RECENT_MAX)
        self._purchases: deque[Op] = deque(maxlen=SHARED_RECENT_MAX)

    def share(self, op: Op) -> None:
        if not op.ok or op.kind in ("replay", "key_reuse"):
            return
        with self._lock:
            if op.kind == "stripe_purchase":
                self._purchases.append(op)
            self._entries.extend(e for e in op.entries() if e.get("type") != "reversal")

    def recent_entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def recent_purchases(self) -> list[Op]:
        with self._lock:
            return list(self._purchases)


def _catalog_package_ids() -> list[str]:
    from tokenledger.domain.catalog import load_catalog

    return [p.package_id for p in load_catalog().packages]
