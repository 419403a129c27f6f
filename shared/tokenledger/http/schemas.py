"""Request and response shapes of the HTTP API (validation and the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, StringConstraints, model_validator

from tokenledger.domain.errors import ValidationFailed
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

Identifier = Annotated[StrictStr, StringConstraints(pattern=ID_PATTERN)]
Amount = Annotated[StrictInt, Field(ge=AMOUNT_MIN, le=AMOUNT_MAX, description="Tokens, a JSON integer.")]
MetadataKey = Annotated[StrictStr, StringConstraints(min_length=1, max_length=METADATA_KEY_CHARS_MAX)]
MetadataValue = Annotated[StrictStr, StringConstraints(max_length=METADATA_VALUE_CHARS_MAX)]
Metadata = Annotated[dict[MetadataKey, MetadataValue], Field(max_length=METADATA_KEYS_MAX)]
AdminEntryType = Literal["grant", "payout", "refund", "adjustment"]
Reason = Annotated[StrictStr, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_CHARS_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CommitmentIn(_Strict):
    prediction_id: Identifier
    amount: Amount
    metadata: Metadata = Field(default_factory=dict)


class AdminAmountIn(_Strict):
    """The type and amount of an admin entry: signed for `adjustment`, else > 0; 1..AMOUNT_MAX in size."""

    type: AdminEntryType
    amount: StrictInt = Field(description="Tokens; signed for `adjustment`, else > 0.")

    @model_validator(mode="after")
    def _amount_fits_type(self) -> Self:
        try:
            check_amount(self.amount, signed=self.type == "adjustment")
        except ValidationFailed as refused:
            raise ValueError(refused.detail) from None
        return self


class AdminEntryIn(AdminAmountIn):
    related_id: Identifier | None = None
    reason: Reason
    metadata: Metadata = Field(default_factory=dict)


class EntryOut(BaseModel):
    entry_id: str
    user_id: str
    seq: int
    type: str
    amount: int
    balance_after: int
    counterparty: str
    related_id: str | None
    metadata: dict[str, str]
    created_at: str
    reverses: str | None
    reason: str | None = None
    actor: str | None = None
    unrecovered: int | None = None
    hash: str | None = None


class WriteOut(BaseModel):
    entry: EntryOut
    balance: int


class BalanceOut(BaseModel):
    """Now: `updated_at`. With `?at=T`: `at` (T in UTC, milliseconds) instead."""

    user_id: str
    balance: int
    version: int
    updated_at: str | None = None
    at: str | None = None
    sufficient: bool | None = None
    shortfall: int | None = None


class StatementOut(BaseModel):
    user_id: str
    from_: str = Field(alias="from")
    to: str
    opening_balance: int
    closing_balance: int
    totals_by_type: dict[str, int]
    entries: list[EntryOut]
    opening_seq: int
    opening_hash: str | None
    head_hash: str | None


class HistoryOut(BaseModel):
    items: list[EntryOut]
    next_cursor: str | None


class PriceOut(BaseModel):
    amount: int
    currency: str


class PackageOut(BaseModel):
    package_id: str
    name: str
    tokens: int
    price: PriceOut


class PackagesOut(BaseModel):
    packages: list[PackageOut]


class CheckoutSessionIn(_Strict):
    """A package to buy; where Stripe sends the buyer back (defaults from the template, allowed origins only)."""

    package_id: StrictStr = Field(max_length=200, description="A package_id of GET /v1/packages.")
    success_url: StrictStr | None = Field(default=None, description="Absolute URL on an allowed origin.")
    cancel_url: StrictStr | None = Field(default=None, description="Absolute URL on an allowed origin.")


class CheckoutSessionOut(BaseModel):
    checkout_session_id: str
    url: str = Field(description="Send the buyer here (Stripe Checkout; the local checkout page under make run).")
    package_id: str
    tokens: int
    price: PriceOut
    expires_at: str = Field(description="RFC 3339; the session cannot be paid after it.")


class _Open(BaseModel):
    """A response shape that may carry more fields than it names (documented extensions)."""

    model_config = ConfigDict(extra="allow")


class FindingOut(_Open):
    kind: str
    detail: str


class AuditOut(_Open):
    user_id: str
    stored_balance: int
    computed_balance: int
    version: int
    entries_checked: int
    consistent: bool
    inconsistencies: list[FindingOut]


class BalanceVersionOut(BaseModel):
    balance: int
    version: int


class RepairOut(_Open):
    before: BalanceVersionOut
    after: BalanceVersionOut
    repaired: bool


class AccountFindingOut(FindingOut):
    user_id: str


class ReportOut(_Open):
    """The reconciliation report (docs/reconciliation.md lists the extension fields)."""

    run_id: str
    started_at: str
    finished_at: str
    accounts_checked: int
    entries_checked: int
    tokens_outstanding: int
    totals_by_type: dict[str, int]
    inconsistencies: list[AccountFindingOut]
    unrecovered_chargebacks: int
    healthy: bool
    snapshot_key: str | None


class ReportSummaryOut(BaseModel):
    """One past reconciliation run, without its findings list (`GET /v1/admin/reports`)."""

    run_id: str
    started_at: str
    finished_at: str
    accounts_checked: int
    entries_checked: int
    tokens_outstanding: int
    unrecovered_chargebacks: int
    findings: int
    findings_by_kind: dict[str, int]
    healthy: bool
    key: str


class ReportListOut(BaseModel):
    reports: list[ReportSummaryOut]


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def problem_responses(*statuses: int) -> dict[int, OpenAPIResponse]:
    """OpenAPI `responses` entries for the given error statuses (RFC 9457 problem details)."""
    return {
        status: {"description": "Problem details", "content": {"application/problem+json": {"model": Problem}}}
        for status in statuses
    }


def ok_response(status: int, model: type[BaseModel], description: str) -> dict[int, OpenAPIResponse]:
    return {status: {"description": description, "content": {"application/json": {"model": model}}}}
