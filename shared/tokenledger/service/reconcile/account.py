"""One account, on demand (the admin routes): its exact audit, and its repair from its chain.

The audit is the fleet run's exact re-check (`check_account_exactly`) plus the Stripe check of
the account's purchases. Repair rebuilds the account item from the entries, and refuses when
the entries themselves are inconsistent: it never writes an entry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tokenledger.domain.errors import ContentionExhausted, LedgerError
from tokenledger.domain.model import Account, EntryType
from tokenledger.service.ports import AccountWrite, Guard, TransactionRefused
from tokenledger.service.reconcile.chain import ChainCheck, check_account_exactly, exact_chain
from tokenledger.service.reconcile.findings import CHAIN_KINDS, NOTICE_KINDS, FindingKind
from tokenledger.service.reconcile.ports import AccountProbe, AccountWriter, PaymentIndex
from tokenledger.service.reconcile.records import purchase_problems

REPAIR_RECORD_PREFIX = "repair"


class ChainInconsistent(LedgerError):
    """Repair refused: the entries themselves are inconsistent; only new entries can fix that."""

    code = "chain_inconsistent"
    title = "The account's entries are inconsistent"


def audit_account(probe: AccountProbe, user_id: str, payments: PaymentIndex | None = None) -> dict[str, Any]:
    """`GET /v1/admin/accounts/{user_id}/audit`: the same checks, exactly, on one account."""
    check, account = check_account_exactly(probe, user_id)
    inconsistencies = [{"kind": str(k), "detail": d} for k, d in check.findings or ()]
    if payments is not None:
        purchases = [e for e in probe.iter_chain(user_id) if e.type == EntryType.PURCHASE and e.seq <= check.version]
        for _, problem in purchase_problems(payments, purchases):
            inconsistencies.append({"kind": str(FindingKind.PURCHASE_WITHOUT_PAYMENT), "detail": problem})
    return {
        "user_id": user_id,
        "stored_balance": account.balance if account else 0,
        "computed_balance": check.computed,
        "version": account.version if account else 0,
        "entries_checked": check.entries,
        "consistent": not any(i["kind"] not in NOTICE_KINDS for i in inconsistencies),
        "inconsistencies": inconsistencies,
    }


@dataclass(frozen=True, slots=True)
class RepairPlan:
    before: Account
    after: Account

    @property
    def needed(self) -> bool:
        before, after = self.before, self.after
        return (before.balance, before.version, before.head_hash) != (after.balance, after.version, after.head_hash)


def plan_repair(probe: AccountProbe, user_id: str, *, now: str) -> RepairPlan:
    """The account item rebuilt from its chain; refuses if the chain itself is broken."""
    before = probe.get_account(user_id) or Account(user_id=user_id)
    check = ChainCheck(user_id=user_id, balance=0, version=1 << 62)
    first_created: str | None = None
    hash_at_version: str | None = None
    for entry in exact_chain(probe, user_id):
        first_created = first_created or entry.created_at
        check.feed(entry)
        if entry.seq == before.version:
            hash_at_version = entry.hash
    # The account's head anchors its chain: a chain that verifies from genesis but not to the
    # head the account holds was rewritten (or the head was). Reported, never adopted.
    if before.head_hash is not None and hash_at_version != before.head_hash:
        check.note(FindingKind.HASH_MISMATCH, f"the account's head hash is not the hash of seq {before.version}")
    broken = [(k, d) for k, d in check.findings or () if k in CHAIN_KINDS]
    if broken:
        raise ChainInconsistent(
            "the entries are inconsistent; the account item cannot be rebuilt from them",
            inconsistencies=[{"kind": str(k), "detail": d} for k, d in broken],
        )
    after = Account(
        user_id=user_id,
        balance=check.computed,
        version=check.last_seq,
        created_at=before.created_at or first_created or now,
        updated_at=max(now, before.updated_at or now),
        head_hash=check.last_hash,
    )
    return RepairPlan(before=before, after=after)


def _balance_view(account: Account) -> dict[str, int]:
    return {"balance": account.balance, "version": account.version}


def repair_account(
    probe: AccountProbe,
    writer: AccountWriter,
    user_id: str,
    *,
    actor: str,
    reason: str | None,
    now: str,
    record_id: str,
) -> dict[str, Any]:
    """`POST /v1/admin/accounts/{user_id}/repair`: rebuild the account item from its chain.

    One transaction: the account update, conditioned on the version and balance just read
    (a write that lands in between refuses it: the caller retries), and the audit record
    (`repair|<user_id>|<record_id>` in the idempotency table, no TTL: kept forever) saying
    who asked, why, and what changed. Entries are only read.
    """
    plan = plan_repair(probe, user_id, now=now)
    body: dict[str, Any] = {
        "user_id": user_id,
        "before": _balance_view(plan.before),
        "after": _balance_view(plan.after),
        "repaired": False,
    }
    if not plan.needed:
        body["after"] = body["before"]
        return body
    record_pk = f"{REPAIR_RECORD_PREFIX}|{user_id}|{record_id}"
    record = Guard(
        name="repair",
        pk=record_pk,
        attributes={
            "kind": "repair",
            "user_id": user_id,
            "actor": actor,
            "reason": reason or "",
            "at": now,
            "before": _balance_view(plan.before),
            "after": _balance_view(plan.after),
            "account_existed": plan.before.exists or plan.before.version > 0,
        },
    )
    try:
        writer.commit(
            [AccountWrite(before=plan.before, after=plan.after, entries=())], idempotency=None, guards=[record]
        )
    except TransactionRefused:
        raise ContentionExhausted("the account changed while it was being repaired; audit it again and retry") from None
    body["repaired"] = True
    body["audit_record"] = record_pk
    return body
