"""The pydantic side of the HTTP API: response shapes, and the request shapes as pydantic models.

Never imported on a valid request: the handlers declare their requests with
`tokenledger.http.shapes` (no pydantic), and this module is loaded for the OpenAPI document
(`infra/openapi.py`) and when a request needs Powertools' own validation (tier 2 in
`tokenledger.http.shapes`). `model_of(shape)` is the pydantic model of a declared shape:
same fields, bounds, descriptions and checks, so the same JSON schema and the same errors.
"""

from __future__ import annotations

import inspect
import typing
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    StringConstraints,
    create_model,
    field_validator,
    model_validator,
)

from tokenledger.domain.errors import ValidationFailed
from tokenledger.http.shapes import MISSING, Param, Shape, Spec


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _annotation(spec: Spec) -> Any:
    if spec.kind == "text":
        bounds: dict[str, Any] = {"strip_whitespace": spec.strip or None, "min_length": spec.min_length}
        bounds |= {"max_length": spec.max_length, "pattern": spec.pattern}
        given = {k: v for k, v in bounds.items() if v is not None}
        return Annotated[StrictStr, StringConstraints(**given)] if given else StrictStr
    if spec.kind == "integer":
        return StrictInt
    if spec.kind == "choice":
        return Literal[spec.values]
    if spec.kind == "mapping" and spec.key is not None and spec.value is not None:
        return Annotated[dict[_annotation(spec.key), _annotation(spec.value)], Field(max_length=spec.max_length)]  # type: ignore[misc]
    if spec.kind == "items" and spec.item is not None:
        return list[model_of(spec.item)]  # type: ignore[misc]
    raise TypeError(f"no pydantic type for a {spec.kind} field")  # pragma: no cover


def _field(spec: Spec) -> tuple[Any, Any]:
    annotation = _annotation(spec)
    if spec.default is None:
        annotation = annotation | None
    options: dict[str, Any] = {"ge": spec.ge, "le": spec.le, "description": spec.description}
    if spec.kind == "items":
        options["min_length"] = spec.min_length
    options = {k: v for k, v in options.items() if v is not None}
    if spec.default_factory is not None:
        options["default_factory"] = spec.default_factory
    elif spec.default is not MISSING:
        options["default"] = spec.default
    return annotation, Field(**options)


def _before(name: str, check: Any) -> Any:
    def run(cls: type[BaseModel], value: Any) -> Any:
        check(value)  # its own exception (e.g. batch_too_large) goes out as it is, as it always did
        return value

    return field_validator(name, mode="before")(classmethod(run))  # type: ignore[arg-type]


def _after(shape: type[Shape]) -> Any:
    def run(self: BaseModel) -> BaseModel:
        try:
            shape.check(dict(self))
        except ValidationFailed as refused:
            raise ValueError(refused.detail) from None
        return self

    return model_validator(mode="after")(run)


# Kept on the shape class itself (its own __dict__, never a base's), not in a module-level
# registry that would keep every copy of a handler module that declares shapes alive.
_MODEL_ATTRIBUTE = "_tokenledger_pydantic_model"


def model_of(shape: type[Shape]) -> type[BaseModel]:
    """The pydantic model of a declared shape (its base shape's model as its base), made once."""
    made: type[BaseModel] | None = vars(shape).get(_MODEL_ATTRIBUTE)
    if made is not None:
        return made
    base = shape.__mro__[1]
    parent = model_of(base) if base is not Shape and issubclass(base, Shape) else _Strict
    own = {name: spec for name, spec in shape.fields.items() if name not in getattr(base, "fields", {})}
    validators: dict[str, Any] = {f"_before_{n}": _before(n, s.before) for n, s in own.items() if s.before}
    if shape.has_check() and "check" in vars(shape):
        validators["_check"] = _after(shape)
    model: type[BaseModel] = create_model(  # type: ignore[call-overload]
        shape.__name__,
        __base__=parent,
        __doc__=shape.__doc__,
        __module__=shape.__module__,
        __validators__=validators,
        **{name: _field(spec) for name, spec in own.items()},
    )
    setattr(shape, _MODEL_ATTRIBUTE, model)
    return model


def _realized(annotation: Any) -> Any:
    """A route parameter's annotation with Powertools' markers and pydantic models in."""
    from aws_lambda_powertools.event_handler.openapi import params

    if typing.get_origin(annotation) is not Annotated:
        return annotation
    inner, *extras = typing.get_args(annotation)
    if isinstance(inner, type) and issubclass(inner, Shape):
        inner = model_of(inner)
    marker_of = {"path": params.Path, "query": params.Query, "body": params.Body}
    extras = [marker_of[e.where](**e.options) if isinstance(e, Param) else e for e in extras]
    return Annotated[(inner, *extras)]  # type: ignore[valid-type]


def realize(func: Any) -> None:
    """Give a route handler the signature Powertools' validation and OpenAPI generation read."""
    if getattr(func, "__signature__", None) is not None:
        return
    hints = typing.get_type_hints(func, include_extras=True)
    signature = inspect.signature(func)
    parameters = [p.replace(annotation=_realized(hints.get(n, p.annotation))) for n, p in signature.parameters.items()]
    func.__signature__ = signature.replace(parameters=parameters, return_annotation=hints.get("return", Any))


def realize_responses(responses: dict[int, Any] | None) -> None:
    """Swap the model names `ok_response`/`problem_responses` put in for the models of this module."""
    for response in (responses or {}).values():
        for content in response.get("content", {}).values():
            if isinstance(content.get("model"), str):
                content["model"] = globals()[content["model"]]


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


class BatchOut(BaseModel):
    entries: list[EntryOut]
    balances: dict[str, int]


class BalanceRowOut(BaseModel):
    user_id: str
    balance: int
    version: int


class BalancesOut(BaseModel):
    balances: list[BalanceRowOut]
    total: int


class ClosedOut(BaseModel):
    prediction_id: str
    closed: bool
    closed_at: str


class SettlementOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    settlement_id: str
    prediction_id: str
    outcome: str
    status: Literal["pending", "running", "completed", "failed"]
    taken_in: int
    house_contribution: int
    payouts_total: int
    paid_total: int
    entries_written: int
    chunks_total: int
    chunks_done: int


class Problem(BaseModel):
    """RFC 9457 problem details (`application/problem+json`)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, Any]] | None = None


def document_routes(app: Any) -> None:
    """Make a resolver's routes read as Powertools documents a validating resolver: realized
    signatures, response models, and the 422 validation responses (`infra/openapi.py`)."""
    for route in app._dynamic_routes + app._static_routes:
        realize(route.func)
        realize_responses(route.responses)
    app._enable_validation = True
