"""Request bodies shared by several functions (declared with `tokenledger.http.shapes`, no pydantic)."""

from __future__ import annotations

from typing import Any

from tokenledger.domain.model import (
    AMOUNT_MAX,
    AMOUNT_MIN,
    ID_PATTERN,
    METADATA_KEY_CHARS_MAX,
    METADATA_KEYS_MAX,
    METADATA_VALUE_CHARS_MAX,
    REASON_CHARS_MAX,
    check_amount,
)
from tokenledger.http.shapes import MISSING, Shape, choice, integer, mapping, text


def identifier(*, default: Any = MISSING) -> Any:
    """An id of this API (ID_PATTERN)."""
    return text(pattern=ID_PATTERN, default=default)


def amount() -> Any:
    return integer(ge=AMOUNT_MIN, le=AMOUNT_MAX, description="Tokens, a JSON integer.")


def metadata() -> Any:
    return mapping(
        text(min_length=1, max_length=METADATA_KEY_CHARS_MAX),
        text(max_length=METADATA_VALUE_CHARS_MAX),
        max_length=METADATA_KEYS_MAX,
    )


def reason(*, default: Any = MISSING) -> Any:
    return text(strip=True, min_length=1, max_length=REASON_CHARS_MAX, default=default)


ADMIN_ENTRY_TYPES = ("grant", "payout", "refund", "adjustment")


class CommitmentIn(Shape):
    prediction_id: str = identifier()
    amount: int = amount()
    metadata: dict[str, str] = metadata()


class AdminAmountIn(Shape):
    """The type and amount of an admin entry: signed for `adjustment`, else > 0; 1..AMOUNT_MAX in size."""

    type: str = choice(*ADMIN_ENTRY_TYPES)
    amount: int = integer(description="Tokens; signed for `adjustment`, else > 0.")

    @classmethod
    def check(cls, values: dict[str, Any]) -> None:
        check_amount(values["amount"], signed=values["type"] == "adjustment")  # ValidationFailed


class AdminEntryIn(AdminAmountIn):
    related_id: str | None = identifier(default=None)
    reason: str = reason()
    metadata: dict[str, str] = metadata()


class CheckoutSessionIn(Shape):
    """A package to buy; where Stripe sends the buyer back (defaults from the template, allowed origins only)."""

    package_id: str = text(max_length=200, description="A package_id of GET /v1/packages.")
    success_url: str | None = text(default=None, description="Absolute URL on an allowed origin.")
    cancel_url: str | None = text(default=None, description="Absolute URL on an allowed origin.")
