"""The invariant checks after a run, made straight on the tables and through the API, faults off.

Each check is a method named after the invariant; it returns what held or raises
`InvariantBroken` (`infra.invariants.require`: a check that survives `python -O`). `Verifier.run`
runs the ledger and exactly-once checks here and the feature checks (`infra.chaos.feature_checks`)
of what the template declares.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any

from infra.api import LocalApi
from infra.chaos.client import CLIENT_ATTEMPTS_MAX
from infra.chaos.feature_checks import FeatureChecks
from infra.chaos.model import WELCOME_GRANT_ACTOR, Op, error_code, user_claims
from infra.chaos.report import Check
from infra.chaos.workload import Features
from infra.invariants import InvariantBroken, assert_account_consistent, require
from infra.template import Stack

HISTORY_PAGE = 100
HISTORY_PAGES_MAX = 1_000


class Verifier(FeatureChecks):
    """The checks after a run, made straight on the tables and through the API, faults off."""

    def __init__(self, stack: Stack, dynamodb: Any, ops: list[Op], features: Features, api: LocalApi) -> None:
        super().__init__(stack, dynamodb, ops, features, api)
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        self.check(self.ledger_consistent)
        self.check(self.no_negative_balance)
        self.check(self.totals_match)
        if self.features.reconcile:
            self.check(self.reconciliation_clean)
        self.check(self.key_moved_at_most_once)
        self.check(self.stored_responses_match_ledger)
        self.check(self.every_entry_explained)
        self.check(self.acknowledged_in_ledger)
        self.check(self.refused_moved_nothing)
        self.check(self.replays_identical)
        self.check(self.history_shows_acknowledged)
        if self.features.reversals:
            self.check(self.reversed_at_most_once)
        if self.features.stripe:
            self.check(self.payment_credited_at_most_once)
        if self.features.audit:
            self.check(self.audits_and_repairs_under_load)
        if self.features.signup:
            self.check(self.welcome_granted_once)
        if self.features.balances:
            self.check(self.balance_summaries_sane)
        if self.features.predictions:
            self.check(self.settlements_exact)
        self.check(self.unknown_outcomes)
        return self.checks

    def check(self, fn: Callable[[], str]) -> None:
        name = fn.__name__
        try:
            detail = fn()
        except InvariantBroken as failed:
            self.checks.append(Check(name, False, str(failed) or "assertion failed"))
            return
        self.checks.append(Check(name, True, detail))

    def ledger_consistent(self) -> str:
        failures = []
        for user in sorted(self.users()):
            try:
                assert_account_consistent(self.dynamodb, self.stack, user)
            except InvariantBroken as broken:
                failures.append(f"{user}: {broken}")
        require(not failures, "; ".join(failures[:5]))
        return f"{len(self.users())} accounts: seq 1..n, chain, version = n, balance = last balance_after"

    def no_negative_balance(self) -> str:
        negative = [u for u, a in self.accounts.items() if int(a.get("balance", 0)) < 0]
        negative += [f"{e['user_id']}#{e['seq']}" for e in self.entries if e["balance_after"] < 0]
        require(not negative, f"below zero: {negative[:5]}")
        lowest = min((int(a.get("balance", 0)) for a in self.accounts.values()), default=0)
        return f"lowest balance {lowest}; no balance_after below zero in {len(self.entries)} entries"

    def totals_match(self) -> str:
        balances = sum(int(a.get("balance", 0)) for a in self.accounts.values())
        moved = sum(e["amount"] for e in self.entries)
        require(balances == moved, f"sum of balances {balances} != sum of entry amounts {moved}")
        return f"sum of balances = sum of entry amounts = {balances}"

    def _expected_per_key(self) -> dict[str, int]:
        expected: dict[str, int] = {}
        for op in self.ops:
            if op.key is None or op.kind in ("replay", "key_reuse"):
                continue
            expected[op.key] = len(op.request.body["operations"]) if op.kind == "batch" else 1
        return expected

    def key_moved_at_most_once(self) -> str:
        by_key = self._entries_by_key()
        expected = self._expected_per_key()
        twice = [k for k, found in by_key.items() if len(found) > expected.get(k, 0)]
        require(not twice, f"keys that moved tokens more than once: {twice[:5]}")
        batches_split = [
            k
            for k, found in by_key.items()
            if expected.get(k, 1) > 1 and len(found) != expected[k]  # all or nothing
        ]
        require(not batches_split, f"batches partly applied: {batches_split[:5]}")
        return f"{len(by_key)} of {len(expected)} keys moved tokens, each once"

    def stored_responses_match_ledger(self) -> str:
        """Count entries per key through the stored responses: each names exactly that key's entries."""
        by_key = self._entries_by_key()
        problems = []
        records = 0
        for record in self.idempotency:
            if "response" not in record:
                continue  # a guard, not a stored response
            records += 1
            key = str(record["pk"]).rsplit("|", 1)[-1]
            body = json.loads(record["response"])
            named = [body["entry"]] if isinstance(body.get("entry"), dict) else list(body.get("entries") or [])
            for entry in named:
                stored = self.by_id.get(entry["entry_id"])
                if stored is None:
                    problems.append(f"{key}: stored response names {entry['entry_id']}, not in the ledger")
                elif any(stored.get(f) != entry.get(f) for f in ("user_id", "seq", "amount", "balance_after", "type")):
                    problems.append(f"{key}: stored response differs from entry {entry['entry_id']}")
            if key in by_key and {e["entry_id"] for e in by_key[key]} != {e["entry_id"] for e in named}:
                problems.append(f"{key}: ledger has {len(by_key[key])} entries, stored response names {len(named)}")
        keyed = {k for k in by_key}
        unrecorded = keyed - {str(r["pk"]).rsplit("|", 1)[-1] for r in self.idempotency if "response" in r}
        if unrecorded:
            problems.append(f"entries without an idempotency record: {sorted(unrecorded)[:5]}")
        require(not problems, "; ".join(problems[:5]))
        return f"{records} stored responses each name exactly their key's entries"

    def every_entry_explained(self) -> str:
        """No token from nowhere: each entry comes from a request some client sent."""
        sent = {op.key for op in self.ops if op.key}
        payments = {op.stripe["payment"] for op in self.ops if op.stripe}
        orphans = []
        for entry in self.entries:
            key = (entry.get("metadata") or {}).get("chaos_op")
            if key in sent:
                continue
            if entry["type"] == "reversal" and entry.get("reverses") in self.by_id:
                continue
            if entry.get("actor") == WELCOME_GRANT_ACTOR and entry["user_id"] in self._signed_up():
                continue
            if entry["type"] in ("purchase", "chargeback") and entry.get("related_id") in payments:
                continue
            by_settlement = entry["type"] == "refund" and str(entry.get("actor", "")).startswith("settlement:")
            if by_settlement and entry.get("related_id") in self._settled_predictions():
                continue
            orphans.append(f"{entry['user_id']}#{entry['seq']} {entry['type']} {entry['amount']}")
        require(not orphans, f"entries no client asked for: {orphans[:5]}")
        return f"all {len(self.entries)} entries trace back to a request"

    def acknowledged_in_ledger(self) -> str:
        missing = []
        count = 0
        for op in self.ops:
            for entry in op.entries():
                count += 1
                stored = self.by_id.get(entry["entry_id"])
                if stored is None:
                    missing.append(f"{op.kind} {op.key}: {entry['entry_id']} missing")
                    continue
                for name in ("user_id", "seq", "type", "amount", "balance_after", "counterparty", "created_at"):
                    if stored.get(name) != entry.get(name):
                        missing.append(f"{op.kind} {op.key}: {name} {entry.get(name)!r} != stored {stored.get(name)!r}")
        require(not missing, "; ".join(missing[:5]))
        acknowledged = sum(1 for op in self.ops if op.ok and op.request.method == "POST")
        return f"{acknowledged} acknowledged writes, {count} entries answered, all in the ledger as answered"

    def refused_moved_nothing(self) -> str:
        by_key = self._entries_by_key()
        acknowledged = {op.key for op in self.ops if op.ok and op.key}
        moved = [
            f"{op.kind} {op.key} ({op.status} {error_code(op.body)})"
            for op in self.ops
            if op.definite and not op.ok and op.key and op.key not in acknowledged and op.key in by_key
        ]
        require(not moved, f"refused (4xx) yet in the ledger: {moved[:5]}")
        refused = sum(1 for op in self.ops if op.definite and not op.ok)
        codes = Counter(error_code(op.body) for op in self.ops if op.definite and not op.ok)
        return f"{refused} refusals moved nothing ({', '.join(f'{c}: {n}' for c, n in sorted(codes.items()))})"

    def replays_identical(self) -> str:
        problems = []
        replays = [op for op in self.ops if op.kind == "replay"]
        for op in replays:
            origin = op.origin
            if origin is None:
                problems.append(f"{op.key}: a replay without its original")
            elif op.status != origin.status or op.body != origin.body or not op.replayed:
                problems.append(f"{op.key}: {op.status} replayed={op.replayed} vs original {origin.status}")
        reuses = [op for op in self.ops if op.kind == "key_reuse"]
        for op in reuses:
            if op.status != 422 or error_code(op.body) != "idempotency_key_reused":
                problems.append(f"{op.key}: reuse answered {op.status} {error_code(op.body)}")
        require(not problems, "; ".join(problems[:5]))
        return f"{len(replays)} replays answered as the original; {len(reuses)} key reuses refused with 422"

    def history_shows_acknowledged(self) -> str:
        """Every client that got a definite answer sees its entries in the user's own history."""
        seen: dict[str, dict[str, dict[str, Any]]] = {}
        for user in sorted(self.users()):
            items: dict[str, dict[str, Any]] = {}
            cursor: str | None = None
            for _ in range(HISTORY_PAGES_MAX):
                query = {"limit": str(HISTORY_PAGE)}
                if cursor:
                    query["cursor"] = cursor
                response = self.api.request("GET", "/v1/transactions", claims=user_claims(user), query=query)
                require(response.status == 200, f"history of {user}: {response.status} {response.body[:200]}")
                for item in response.json["items"]:
                    items[item["entry_id"]] = item
                cursor = response.json.get("next_cursor")
                if not cursor:
                    break
            seen[user] = items
        problems = []
        checked = 0
        for op in self.ops:
            for entry in op.entries():
                checked += 1
                shown = seen.get(entry["user_id"], {}).get(entry["entry_id"])
                if shown != entry:
                    problems.append(f"{op.kind} {op.key}: {entry['entry_id']} {'differs' if shown else 'not shown'}")
        counts = {u: len(items) for u, items in seen.items()}
        ledger_counts = Counter(e["user_id"] for e in self.entries)
        short = [u for u, n in counts.items() if n != ledger_counts.get(u, 0)]
        if short:
            problems.append(f"history length differs from the ledger for {short[:5]}")
        require(not problems, "; ".join(problems[:5]))
        return f"{checked} acknowledged entries shown, identical, in their users' histories"

    def unknown_outcomes(self) -> str:
        unknown = [op for op in self.ops if not op.definite]
        by_key = self._entries_by_key()
        landed = sum(1 for op in unknown if op.key in by_key)
        require(
            len(unknown) <= len(self.ops) // 100 + 1,
            f"{len(unknown)} operations never got a definite answer in {CLIENT_ATTEMPTS_MAX} tries",
        )
        return f"{len(unknown)} operations without a definite answer ({landed} of them landed, once)"
