"""DynamoDB attribute values and plain Python: the one codec the adapters and the local tools share.

Reading: `N` comes back as int, `NULL` as None, `M` and `L` nest; other types (`SS`, `B`, ...)
are returned as DynamoDB gave them. Writing: bool, int, str and dicts of them (guard attributes
and Stripe event records hold nothing else); anything else is a bug, not data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tokenledger.domain.errors import InvariantViolation

AttributeValue = dict[str, Any]

_SCALARS: dict[str, Callable[[Any], Any]] = {"S": str, "N": int, "BOOL": bool, "NULL": lambda _: None}


def plain_value(value: AttributeValue) -> Any:
    """One attribute value as plain Python (numbers as int)."""
    ((kind, raw),) = value.items()
    if kind == "M":
        return {k: plain_value(v) for k, v in raw.items()}
    if kind == "L":
        return [plain_value(v) for v in raw]
    convert = _SCALARS.get(kind)
    return raw if convert is None else convert(raw)


def plain_item(item: Mapping[str, AttributeValue]) -> dict[str, Any]:
    """A DynamoDB item (or stream image) as plain Python (numbers as int)."""
    return {name: plain_value(value) for name, value in item.items()}


def attribute_value(value: Any) -> AttributeValue:
    """The inverse of `plain_value` for bool, int, str and dicts of them."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return {"N": str(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {k: attribute_value(v) for k, v in value.items()}}
    raise InvariantViolation(f"unsupported attribute type {type(value).__name__}")
