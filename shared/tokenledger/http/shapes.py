"""Request shapes and parameters, validated on Lambda without importing pydantic.

Importing pydantic (and pydantic-core's 5 MB extension) cost 0.35-0.45x of the cold-start
floor, so the handlers declare their requests with the light declarations here, and the
route's validation runs in two tiers (docs/benchmarks.md):

1. **A strict check** (`RoutePlan.accept`) of the path, query and JSON body against these
   declarations. It only *accepts*: a request it accepts is one pydantic accepts with the same
   values (`tests/unit/test_shapes.py` holds it to that). Anything it does not accept outright
   (a wrong type, a bound crossed, an unknown field, whitespace around a stripped string, a
   repeated query parameter, another content type, a custom check refusing) goes to tier 2.
2. **Powertools' own OpenAPI validation**, with the pydantic models built from the same
   declarations (`tokenledger.http.schemas`), loaded on the first such request. It answers
   exactly as before: the same 422 problem bodies, the same `errors` list.

So a valid request never loads pydantic, and a bad one gets the answer it always got. The
OpenAPI document is generated offline from the same declarations (`infra/openapi.py`).

Declaring a body::

    class CommitmentIn(Shape):
        prediction_id: str = text(pattern=ID_PATTERN)
        amount: int = integer(ge=1, le=AMOUNT_MAX, description="Tokens, a JSON integer.")

and a route parameter: `Annotated[int, Query(ge=1, le=100)]`, `Annotated[CommitmentIn, Body()]`.
"""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

MISSING: Any = object()
# A query integer the strict check reads itself; anything else ("+5", " 5", "05") goes to pydantic.
_CANONICAL_INT = re.compile(r"0|[1-9][0-9]{0,17}")


# ------------------------------------------------------------------------------ body fields
@dataclass(frozen=True, slots=True)
class Spec:
    """One field of a shape: its kind and bounds, its default, its description."""

    kind: str  # "text" | "integer" | "choice" | "mapping" | "items"
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    strip: bool = False
    ge: int | None = None
    le: int | None = None
    values: tuple[str, ...] = ()
    key: Spec | None = None
    value: Spec | None = None
    item: type[Shape] | None = None
    before: Callable[[Any], None] | None = None  # runs on the raw list (e.g. refuses too many)
    default: Any = MISSING
    default_factory: Callable[[], Any] | None = None
    description: str | None = None

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.default_factory is None


def text(
    *,
    min_length: int | None = None,
    max_length: int | None = None,
    pattern: str | None = None,
    strip: bool = False,
    default: Any = MISSING,
    description: str | None = None,
) -> Any:
    """A JSON string (strict: never a number)."""
    return Spec("text", min_length, max_length, pattern, strip, default=default, description=description)


def integer(
    *, ge: int | None = None, le: int | None = None, default: Any = MISSING, description: str | None = None
) -> Any:
    """A JSON integer (strict: never a float, a bool or a string)."""
    return Spec("integer", ge=ge, le=le, default=default, description=description)


def choice(*values: str, default: Any = MISSING, description: str | None = None) -> Any:
    """One of these strings."""
    return Spec("choice", values=values, default=default, description=description)


def mapping(key: Any, value: Any, *, max_length: int | None = None, description: str | None = None) -> Any:
    """A JSON object of `key` text to `value` text, at most `max_length` pairs; `{}` if absent."""
    return Spec("mapping", max_length=max_length, key=key, value=value, default_factory=dict, description=description)


def items(
    item: type[Shape],
    *,
    min_length: int | None = None,
    before: Callable[[Any], None] | None = None,
    default: Any = MISSING,
    description: str | None = None,
) -> Any:
    """A JSON array of `item` shapes; `before` sees the raw list first (and may refuse it)."""
    return Spec("items", min_length=min_length, item=item, before=before, default=default, description=description)


class Refused(Exception):
    """The strict check does not accept this input: pydantic decides (tier 2)."""


def _check_text(spec: Spec, value: Any) -> str:
    if type(value) is not str:
        raise Refused
    if spec.strip and value and (value[0].isspace() or value[-1].isspace()):
        raise Refused  # pydantic strips it first; it answers that case
    if spec.min_length is not None and len(value) < spec.min_length:
        raise Refused
    if spec.max_length is not None and len(value) > spec.max_length:
        raise Refused
    if spec.pattern is not None and re.fullmatch(spec.pattern, value) is None:
        raise Refused
    return value


def _check_integer(spec: Spec, value: Any) -> int:
    if type(value) is not int:
        raise Refused
    if (spec.ge is not None and value < spec.ge) or (spec.le is not None and value > spec.le):
        raise Refused
    return value


def _check(spec: Spec, value: Any) -> Any:
    if value is None and spec.default is None:
        return None
    if spec.kind == "text":
        return _check_text(spec, value)
    if spec.kind == "integer":
        return _check_integer(spec, value)
    if spec.kind == "choice":
        if type(value) is not str or value not in spec.values:
            raise Refused
        return value
    if spec.kind == "mapping" and spec.key is not None and spec.value is not None:
        if type(value) is not dict or (spec.max_length is not None and len(value) > spec.max_length):
            raise Refused
        return {_check_text(spec.key, k): _check_text(spec.value, v) for k, v in value.items()}
    if spec.kind == "items" and spec.item is not None:
        if type(value) is not list:
            raise Refused
        if spec.before is not None:
            _refusing(spec.before, value)
        if spec.min_length is not None and len(value) < spec.min_length:
            raise Refused
        return [spec.item.accept(v) for v in value]
    raise Refused  # pragma: no cover - a kind without a check is never accepted


def _refusing(check: Callable[[Any], None], value: Any) -> None:
    try:
        check(value)
    except Exception:  # the check's own answer comes from pydantic, which runs it again
        raise Refused from None


class Shape:
    """A JSON object with these fields and no others (pydantic's `extra="forbid"`).

    Subclasses list their fields as annotated class attributes (`text(...)`, `integer(...)`,
    ...); a subclass's fields come after its base's, as in pydantic. `check(values)` runs on
    the accepted values and may refuse them (raising); pydantic runs it too (as a model
    validator whose refusal is a `value_error`).
    """

    fields: ClassVar[dict[str, Spec]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = {name: value for name, value in vars(cls).items() if isinstance(value, Spec)}
        cls.fields = {**cls.fields, **own}
        for name in own:
            delattr(cls, name)  # instances carry the values

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)

    @classmethod
    def check(cls, values: dict[str, Any]) -> None:
        """Refuse (raise) values that each pass their field's check but not together."""

    @classmethod
    def has_check(cls) -> bool:
        return cls.check.__func__ is not Shape.check.__func__  # type: ignore[attr-defined]

    @classmethod
    def accept(cls, value: Any) -> Shape:
        """This shape from a parsed JSON value, or `Refused`."""
        if type(value) is not dict or not value.keys() <= cls.fields.keys():
            raise Refused
        values: dict[str, Any] = {}
        for name, spec in cls.fields.items():
            if name in value:
                values[name] = _check(spec, value[name])
            elif spec.default_factory is not None:
                values[name] = spec.default_factory()
            elif spec.default is not MISSING:
                values[name] = spec.default
            else:
                raise Refused
        if cls.has_check():
            _refusing(cls.check, values)
        return cls(**values)

    def model_dump(self) -> dict[str, Any]:
        """The values as plain JSON data, as pydantic's `model_dump()` gives them."""
        return {name: _dump(self.__dict__[name]) for name in self.fields}


def _dump(value: Any) -> Any:
    if isinstance(value, Shape):
        return value.model_dump()
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


# ------------------------------------------------------------------------------ route parameters
@dataclass(frozen=True)
class Param:
    """Where a route parameter comes from, with Powertools' keyword arguments (`alias`, bounds...)."""

    where: ClassVar[str] = ""
    options: dict[str, Any] = field(default_factory=dict)


class _Path(Param):
    where = "path"


class _Query(Param):
    where = "query"


class _Body(Param):
    where = "body"


def Path(**options: Any) -> Any:
    return _Path(options)


def Query(**options: Any) -> Any:
    return _Query(options)


def Body(**options: Any) -> Any:
    return _Body(options)


_PARAM_OPTIONS = {"alias", "ge", "le", "min_length", "max_length", "pattern", "description"}


@dataclass(frozen=True, slots=True)
class _RouteParam:
    name: str
    where: str
    alias: str
    kind: Any  # str, int, an Enum subclass, or a Shape subclass (the body)
    options: dict[str, Any]
    optional: bool
    default: Any


def _unwrap(annotation: Any) -> tuple[Any, Param | None]:
    if typing.get_origin(annotation) is typing.Annotated:
        inner, *extras = typing.get_args(annotation)
        marker = next((e for e in extras if isinstance(e, Param)), None)
        return inner, marker
    return annotation, None


class RoutePlan:
    """A route handler's parameters, read from its signature, and the strict check of a request."""

    def __init__(self, func: Callable[..., Any]) -> None:
        hints = typing.get_type_hints(func, include_extras=True)
        self.params: list[_RouteParam] = []
        self.checkable = True
        for name, parameter in inspect.signature(func).parameters.items():
            inner, marker = _unwrap(hints.get(name, Any))
            if marker is None or not set(marker.options) <= _PARAM_OPTIONS:
                self.checkable = False
                continue
            optional = False
            if typing.get_origin(inner) in (typing.Union, types.UnionType):
                args = [a for a in typing.get_args(inner) if a is not type(None)]
                optional, inner = len(args) < len(typing.get_args(inner)), args[0] if len(args) == 1 else None
            kind = inner if inner in (str, int) or _is_enum(inner) or _is_shape(inner) else None
            if kind is None or (marker.where == "body") != _is_shape(kind):
                self.checkable = False
            alias = marker.options.get("alias", name)
            self.params.append(
                _RouteParam(name, marker.where, alias, kind, marker.options, optional, parameter.default)
            )
        self.has_body = any(p.where == "body" for p in self.params)

    def accept(self, route_args: dict[str, str], event: Any) -> dict[str, Any]:
        """The handler's arguments from this request, or `Refused`."""
        if not self.checkable:
            raise Refused
        values: dict[str, Any] = {}
        query = event.query_string_parameters or {}
        for param in self.params:
            if param.where == "body":
                values[param.name] = self._body(param, event)
                continue
            raw = route_args.get(param.alias) if param.where == "path" else query.get(param.alias)
            if raw is None:
                if param.default is inspect.Parameter.empty:
                    raise Refused
                values[param.name] = param.default
                continue
            if param.where == "query" and "," in raw and _repeated(event, param.alias):
                raise Refused
            values[param.name] = _scalar(param, raw)
        return values

    @staticmethod
    def _body(param: _RouteParam, event: Any) -> Any:
        content_type = event.headers.get("content-type", "").strip()
        if content_type and not content_type.startswith("application/json"):
            raise Refused
        try:
            body = event.json_body
        except Exception:  # unreadable JSON: Powertools answers it
            raise Refused from None
        return param.kind.accept(body)


def _is_enum(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Enum) and issubclass(kind, str)


def _is_shape(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Shape)


def _repeated(event: Any, name: str) -> bool:
    """Whether `name` is sent more than once (Powertools then keeps the values apart)."""
    from urllib.parse import parse_qs

    raw_query = event.get("rawQueryString") or ""
    return len(parse_qs(raw_query, keep_blank_values=True).get(name, ())) > 1


def _scalar(param: _RouteParam, raw: str) -> Any:
    options = param.options
    if param.kind is int:
        if _CANONICAL_INT.fullmatch(raw) is None:
            raise Refused
        number = int(raw)
        if ("ge" in options and number < options["ge"]) or ("le" in options and number > options["le"]):
            raise Refused
        return number
    if _is_enum(param.kind):
        member = next((m for m in param.kind if m.value == raw), None)
        if member is None or set(options) - {"alias", "description"}:
            raise Refused
        return member
    spec = Spec(
        "text",
        min_length=options.get("min_length"),
        max_length=options.get("max_length"),
        pattern=options.get("pattern"),
    )
    if set(options) - {"alias", "description", "min_length", "max_length", "pattern"}:
        raise Refused
    return _check_text(spec, raw)


def ok_response(status: int, model: str, description: str) -> dict[int, Any]:
    """An OpenAPI success response whose schema is `tokenledger.http.schemas.<model>` (resolved offline)."""
    return {status: {"description": description, "content": {"application/json": {"model": model}}}}


def problem_responses(*statuses: int) -> dict[int, Any]:
    """OpenAPI `responses` entries for the given error statuses (RFC 9457 problem details)."""
    return {
        status: {"description": "Problem details", "content": {"application/problem+json": {"model": "Problem"}}}
        for status in statuses
    }
