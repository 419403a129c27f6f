"""The checks of what the template serves beyond commitments and admin entries: reconciliation,
settlements, reversals, Stripe, balance summaries, the sign-up trigger, audits and repairs.

Each check returns what held, or raises `InvariantBroken` (never a bare `assert`).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

from infra.chaos.model import WELCOME_GRANT_ACTOR, admin_claims, error_code
from infra.chaos.snapshot import Snapshot
from infra.invariants import require
from infra.template import LOCAL_REGION

# Reconciliation findings that report a business fact, not a ledger error (the report stays healthy).
RECONCILE_NOTICE_KINDS = frozenset({"unrecovered_chargeback"})
# What an audit may see while a Stripe webhook is between its ledger write and its event record
# (the record is a second call; a crash between leaves it missing until Stripe redelivers).
# The end-of-run reconciliation, after every delivery got its 2xx, must not see it.
AUDIT_PENDING_KINDS = frozenset({"purchase_without_payment"})


class FeatureChecks(Snapshot):
    """Checks of the features the template may declare (`Features`); `Verifier` runs those it has."""

    def reconciliation_clean(self) -> str:
        from infra.lambdas import Environment

        spec = self.stack.functions()[self.features.reconcile or ""]
        event = {
            "version": "0",
            "id": "chaos-reconcile",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "123456789012",
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "region": LOCAL_REGION,
            "resources": [],
            "detail": {},
        }
        report = Environment(spec).invoke(event)
        if isinstance(report, dict) and isinstance(report.get("body"), str):
            report = json.loads(report["body"])
        require(isinstance(report, dict), f"reconcile returned {type(report).__name__}")
        findings = report.get("inconsistencies") or []
        wrong = [f for f in findings if f.get("kind") not in RECONCILE_NOTICE_KINDS]
        require(report.get("healthy") is True and not wrong, f"reconciliation found {wrong[:5]}")
        unrecovered = sum(int(e.get("unrecovered") or 0) for e in self.entries if e["type"] == "chargeback")
        reported = int(report.get("unrecovered_chargebacks") or 0)
        require(reported == unrecovered, f"report says {reported} tokens unrecovered, the entries {unrecovered}")
        return (
            f"healthy, no inconsistency; {report.get('accounts_checked')} accounts, "
            f"{report.get('entries_checked')} entries, {report.get('tokens_outstanding')} tokens outstanding, "
            f"{reported} tokens of chargebacks unrecovered (a notice)"
        )

    def settlements_exact(self) -> str:
        """Each settled prediction: no commitment accepted once its close was answered, every user
        refunded exactly once what they put in net of reversals, the settlement completed and its
        totals agreeing."""
        problems: list[str] = []
        settled = self._settled_predictions()
        for prediction in sorted(settled):
            response = self.api.request("GET", f"/v1/admin/predictions/{prediction}/settlement", claims=admin_claims(0))
            require(response.status == 200, f"{prediction}: GET settlement {response.status}")
            settlement = response.json
            if settlement["status"] != "completed":
                problems.append(f"{prediction}: settlement {settlement['status']}")
            put_in: Counter[str] = Counter()
            refunded: Counter[str] = Counter()
            refunds: Counter[str] = Counter()
            for entry in self.entries:
                if entry.get("related_id") != prediction:
                    continue
                if entry["type"] in ("commitment", "reversal"):
                    put_in[entry["user_id"]] -= entry["amount"]
                elif entry["type"] == "refund":
                    refunded[entry["user_id"]] += entry["amount"]
                    refunds[entry["user_id"]] += 1
            expected = {u: n for u, n in put_in.items() if n > 0}
            if dict(refunded) != expected:
                problems.append(f"{prediction}: refunded {dict(refunded)} != put in {expected}")
            if any(n > 1 for n in refunds.values()):
                problems.append(f"{prediction}: a user refunded more than once")
            problems += self._accepted_after_close(prediction)
            total = sum(expected.values())
            if (settlement["taken_in"], settlement["paid_total"]) != (total, total):
                problems.append(f"{prediction}: taken_in {settlement['taken_in']}, paid {settlement['paid_total']}")
        require(not problems, "; ".join(problems[:5]))
        closes = sum(1 for op in self.ops if op.kind == "close" and op.ok)
        late = sum(
            1 for op in self.ops if op.kind == "commitment_settled" and error_code(op.body) == "prediction_closed"
        )
        return (
            f"{len(settled)} predictions settled ({closes} closes): every user refunded once what they put in;"
            f" {late} commitments refused after a close, none accepted once a close was answered"
        )

    def _accepted_after_close(self, prediction: str) -> list[str]:
        """Commitments sent after a close of `prediction` was answered, and accepted anyway.

        The order is the clients' (one clock, `time.monotonic`), not the entries' `created_at`:
        a commitment stamped by its Lambda after the close took `closed_at`, but written before
        the closed marker, was rightly accepted, and the settlement counts it (the taken-in and
        refund checks hold that). What the contract forbids is acceptance after the close answered.
        """
        closing = (f"/v1/admin/predictions/{prediction}/close", f"/v1/admin/predictions/{prediction}/settlement")
        answered = [
            op.answered_at
            for op in self.ops
            if op.kind in ("close", "settle") and op.ok and op.request.path in closing and op.answered_at is not None
        ]
        if not answered:
            return []
        closed = min(answered)
        return [
            f"{prediction}: commitment op {op.client}/{op.number} accepted though sent after the close was answered"
            for op in self.ops
            if op.kind == "commitment_settled"
            and op.ok
            and not op.replayed
            and op.request.body.get("prediction_id") == prediction
            and op.sent_at is not None
            and op.sent_at > closed
        ]

    def reversed_at_most_once(self) -> str:
        reversals = Counter(e["reverses"] for e in self.entries if e["type"] == "reversal" and e.get("reverses"))
        twice = [k for k, n in reversals.items() if n > 1]
        require(not twice, f"entries reversed more than once: {twice[:5]}")
        return f"{len(reversals)} entries reversed, each once"

    def payment_credited_at_most_once(self) -> str:
        payments = {op.stripe["payment"]: op for op in self.ops if op.kind == "stripe_purchase" and op.stripe}
        credited: Counter[str] = Counter()
        purchased: dict[str, int] = {}
        clawed: Counter[str] = Counter()
        for entry in self.entries:
            payment = str(entry.get("related_id") or "")
            if payment not in payments or entry.get("counterparty") != "stripe":
                continue
            if entry["type"] == "purchase":
                credited[payment] += 1
                purchased[payment] = entry["amount"]
            elif entry["type"] == "chargeback":
                clawed[payment] += -entry["amount"] + int(entry.get("unrecovered") or 0)
        # An admin reversal of a purchase and Stripe's refunds/disputes take it back at most once in total.
        purchase_payment = {e["entry_id"]: str(e["related_id"]) for e in self.entries if e["type"] == "purchase"}
        reversed_purchases = 0
        for entry in self.entries:
            payment = purchase_payment.get(str(entry.get("reverses") or ""), "")
            if entry["type"] == "reversal" and payment in payments:
                clawed[payment] += -entry["amount"]
                reversed_purchases += 1
        twice = [p for p, n in credited.items() if n > 1]
        require(not twice, f"payments credited more than once: {twice[:5]}")
        over = [p for p, n in clawed.items() if n > purchased.get(p, 0)]
        require(not over, f"payments clawed back beyond their purchase: {over[:5]}")
        acknowledged = [p for p, op in payments.items() if op.ok]
        uncredited = [p for p in acknowledged if credited[p] != 1]
        require(not uncredited, f"acknowledged purchases not credited: {uncredited[:5]}")
        recovered = sum(-e["amount"] for e in self.entries if e["type"] == "chargeback")
        return (
            f"{len(credited)} payments credited once each; {len(clawed)} clawed back within their purchase "
            f"({recovered} tokens recovered, {reversed_purchases} purchases reversed by an admin)"
        )

    def balance_summaries_sane(self) -> str:
        """Admin balance summaries read during the writes: one row per user asked, none negative, total = sum."""
        problems = []
        reads = [op for op in self.ops if op.kind == "admin_balances"]
        for op in reads:
            body = op.body if isinstance(op.body, dict) else {}
            rows = body.get("balances") or []
            asked = (op.request.query or {}).get("user_ids", "").split(",")
            if op.status != 200 or [r["user_id"] for r in rows] != asked:
                problems.append(f"{op.status}: {str(body)[:200]}")
            elif any(r["balance"] < 0 for r in rows) or body.get("total") != sum(r["balance"] for r in rows):
                problems.append(f"rows {rows} total {body.get('total')}")
        require(not problems, "; ".join(problems[:5]))
        return f"{len(reads)} summaries read during the writes: none negative, totals add up"

    def welcome_granted_once(self) -> str:
        grants = Counter(e["user_id"] for e in self.entries if e.get("actor") == WELCOME_GRANT_ACTOR)
        twice = [u for u, n in grants.items() if n > 1]
        require(not twice, f"welcome grant given more than once to {twice[:5]}")
        confirmed = {op.user_id for op in self.ops if op.kind == "signup" and op.ok}
        tokens = int(os.environ.get("WELCOME_GRANT_TOKENS", "0"))
        missing = sorted(u for u in confirmed if tokens and grants[u] != 1)
        require(not missing, f"confirmed sign-ups without their welcome grant: {missing[:5]}")
        signups = sum(1 for op in self.ops if op.kind == "signup")
        return f"{signups} sign-up triggers (redelivered) for {len(confirmed)} users: {sum(grants.values())} grants"

    def audits_and_repairs_under_load(self) -> str:
        """The per-account audit saw no inconsistency mid-run; repair found nothing to repair."""
        problems = []
        pending = 0
        audits = [op for op in self.ops if op.kind == "audit" and op.ok]
        for op in audits:
            body = op.body if isinstance(op.body, dict) else {}
            found = [f for f in body.get("inconsistencies") or [] if f.get("kind") not in RECONCILE_NOTICE_KINDS]
            wrong = [f for f in found if f.get("kind") not in AUDIT_PENDING_KINDS]
            pending += len(found) - len(wrong)
            if wrong or (body.get("consistent") is not True and not found):
                problems.append(f"audit of {op.user_id} mid-run: {body.get('inconsistencies')}")
        repairs = [op for op in self.ops if op.kind == "repair" and op.ok]
        for op in repairs:
            body = op.body if isinstance(op.body, dict) else {}
            if body.get("repaired") is not False:
                problems.append(f"repair of {op.user_id} changed a consistent account: {body}")
        refused = [op for op in self.ops if op.kind in ("audit", "repair") and op.definite and not op.ok]
        problems += [f"{op.kind} of {op.user_id} answered {op.status} {error_code(op.body)}" for op in refused]
        require(not problems, "; ".join(problems[:5]))
        return (
            f"{len(audits)} audits during writes: no ledger inconsistency ({pending} saw a purchase whose "
            f"Stripe event record was not written yet); {len(repairs)} repairs changed nothing"
        )
