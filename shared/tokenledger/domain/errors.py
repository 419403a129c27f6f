"""Typed errors. Each expected error carries a stable `code` (the HTTP layer picks its status).

Bad input and business refusals are `LedgerError`s; a broken invariant is an
`InvariantViolation` and is never caught to carry on.
"""

from __future__ import annotations

from typing import Any


class LedgerError(Exception):
    """An expected, client-visible error (mapped to RFC 9457 problem details)."""

    code = "ledger_error"
    title = "Request failed"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class ValidationFailed(LedgerError):
    code = "validation_error"
    title = "Validation failed"

    def __init__(self, detail: str, errors: list[dict[str, Any]] | None = None, **extra: Any) -> None:
        super().__init__(detail, errors=errors or [], **extra)


class Unauthorized(LedgerError):
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(LedgerError):
    code = "forbidden"
    title = "Forbidden"


class NotFound(LedgerError):
    code = "not_found"
    title = "Not found"


class InsufficientBalance(LedgerError):
    code = "insufficient_balance"
    title = "Insufficient balance"

    def __init__(self, detail: str, *, balance: int, shortfall: int, **extra: Any) -> None:
        super().__init__(detail, balance=balance, shortfall=shortfall, **extra)
        self.balance = balance
        self.shortfall = shortfall


class AlreadyReversed(LedgerError):
    code = "already_reversed"
    title = "Entry already reversed"


class VersionConflict(LedgerError):
    code = "version_conflict"
    title = "Version does not match"


class IdempotencyKeyReused(LedgerError):
    code = "idempotency_key_reused"
    title = "Idempotency key reused with a different request"


class BatchTooLarge(LedgerError):
    code = "batch_too_large"
    title = "Batch too large"


class InvalidSignature(LedgerError):
    code = "invalid_signature"
    title = "Invalid signature"


class UnsupportedMediaType(LedgerError):
    code = "unsupported_media_type"
    title = "Unsupported media type"


class ContentionExhausted(LedgerError):
    """The account kept changing under us for every bounded retry: the client may retry."""

    code = "contention"
    title = "Account busy, retry"


class UnknownPackage(LedgerError):
    code = "unknown_package"
    title = "Unknown package"


class RedirectNotAllowed(LedgerError):
    code = "redirect_not_allowed"
    title = "Redirect URL not allowed"


class PaymentProviderUnavailable(LedgerError):
    """Stripe failed, refused or could not be reached; nothing was stored, the same key may be retried."""

    code = "payment_provider_unavailable"
    title = "Payment provider unavailable"


class InvariantViolation(Exception):
    """A broken ledger invariant: a bug, never an expected outcome."""


class NothingToReverse(LedgerError):
    """The entry moved no tokens (a chargeback that recovered nothing): there is nothing to undo."""

    code = "nothing_to_reverse"
    title = "Nothing to reverse"


class AlreadyClawedBack(LedgerError):
    """A purchase whose tokens Stripe refunds or disputes already took back in full."""

    code = "already_clawed_back"
    title = "Purchase already clawed back"


class PredictionClosed(LedgerError):
    code = "prediction_closed"
    title = "Prediction closed"


class PoolExceeded(LedgerError):
    code = "pool_exceeded"
    title = "Payouts exceed what the prediction took in"


class AlreadySettled(LedgerError):
    code = "already_settled"
    title = "Prediction already settled"
