"""What a reconciliation can find: the kinds, which of them an exact re-check settles, which are notices."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FindingKind(StrEnum):
    SEQ_GAP = "seq_gap"
    SEQ_DUPLICATE = "seq_duplicate"
    CHAIN_BREAK = "chain_break"
    BALANCE_MISMATCH = "balance_mismatch"
    VERSION_MISMATCH = "version_mismatch"
    NEGATIVE_BALANCE = "negative_balance"
    ORPHAN_ENTRIES = "orphan_entries"
    IDEMPOTENCY_DANGLING = "idempotency_dangling"
    PURCHASE_WITHOUT_PAYMENT = "purchase_without_payment"
    PAYMENT_WITHOUT_PURCHASE = "payment_without_purchase"
    PRICE_MISMATCH = "price_mismatch"  # paid at another price than the catalog's: not credited, refund it
    UNRECOVERED_CHARGEBACK = "unrecovered_chargeback"
    HASH_MISMATCH = "hash_mismatch"
    # A settled prediction paid out (and refunded) more than it took in plus the house's contribution.
    PREDICTION_OVERPAID = "prediction_overpaid"


# Kinds that say the ledger is wrong. An unrecovered chargeback is a loss the business must
# write off, reported every run, but the ledger recorded it correctly: it does not make the
# run unhealthy (else one old dispute would page on-call every day forever).
NOTICE_KINDS = frozenset({FindingKind.UNRECOVERED_CHARGEBACK})
# Kinds decided by the chain of one account: the ones an exact re-check confirms or clears.
CHAIN_KINDS = frozenset(
    {
        FindingKind.SEQ_GAP,
        FindingKind.SEQ_DUPLICATE,
        FindingKind.CHAIN_BREAK,
        FindingKind.BALANCE_MISMATCH,
        FindingKind.VERSION_MISMATCH,
        FindingKind.NEGATIVE_BALANCE,
        FindingKind.ORPHAN_ENTRIES,
        FindingKind.HASH_MISMATCH,
    }
)


@dataclass(frozen=True, slots=True)
class Finding:
    user_id: str
    kind: FindingKind
    detail: str

    def to_api(self) -> dict[str, str]:
        return {"user_id": self.user_id, "kind": str(self.kind), "detail": self.detail}
