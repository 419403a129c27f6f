"""DynamoDB capacity units from item sizes, by the published rules.

Source: "DynamoDB item sizes and formats" and "Read/write capacity" in the DynamoDB
developer guide. An item's size is the sum of its attribute names' UTF-8 lengths plus the
sizes of their values:

- String: UTF-8 bytes. Binary: raw bytes. Number: 1 byte per two significant digits + 1.
- Boolean and Null: 1 byte.
- List and Map: 3 bytes + the sizes of the elements + 1 byte per element (a map element
  also counts its key's UTF-8 length).
- Sets: the sum of their elements' sizes.

Reads are billed in 4 KB units (strongly consistent 1 RCU, eventually consistent 0.5);
GetItem and BatchGetItem round each item up on its own, Query and Scan round the sum of
every item they evaluated. A missing item still costs one unit. Writes are billed in 1 KB
units of the larger of the item before and after; a conditional write that fails still
costs them. Transactional reads and writes cost double.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024
LIST_MAP_OVERHEAD_BYTES = 3
ELEMENT_OVERHEAD_BYTES = 1

AttributeMap = Mapping[str, Mapping[str, Any]]


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1 (leading and trailing zeroes trimmed)."""
    digits = text.lstrip("+-").lower().split("e", 1)[0].replace(".", "")
    significant = digits.strip("0") or "0"
    return math.ceil(len(significant) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """Size of one attribute value in low-level form ({"S": ...}, {"N": ...}, {"M": ...})."""
    ((kind, inner),) = value.items()
    if kind == "S":
        return _utf8(inner)
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return len(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(s) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(len(b) for b in inner)
    if kind == "M":
        return LIST_MAP_OVERHEAD_BYTES + sum(
            _utf8(k) + value_size(v) + ELEMENT_OVERHEAD_BYTES for k, v in inner.items()
        )
    if kind == "L":
        return LIST_MAP_OVERHEAD_BYTES + sum(value_size(v) + ELEMENT_OVERHEAD_BYTES for v in inner)
    raise ValueError(f"unknown attribute type {kind}")


def item_size(item: AttributeMap | None) -> int:
    """Bytes of an item: attribute names plus values (0 for an absent item)."""
    if not item:
        return 0
    return sum(_utf8(name) + value_size(value) for name, value in item.items())


def read_units(size_bytes: int, *, consistent: bool, transactional: bool = False) -> float:
    """RCUs to read `size_bytes` (one item, or the sum a Query/Scan evaluated). Minimum one unit."""
    units = max(1, math.ceil(size_bytes / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * units
    return float(units) if consistent else units / 2


def write_units(size_bytes: int, *, transactional: bool = False) -> float:
    """WCUs to write an item of `size_bytes` (the larger of before and after). Minimum one unit."""
    units = max(1, math.ceil(size_bytes / WRITE_UNIT_BYTES))
    return float(2 * units if transactional else units)


def projected(item: AttributeMap, *, table_keys: list[str], index: Mapping[str, Any]) -> AttributeMap | None:
    """The item as a GSI stores it, or None when it lacks the index's key attributes (sparse)."""
    index_keys = [k["AttributeName"] for k in index["KeySchema"]]
    if any(k not in item for k in index_keys):
        return None
    projection = index.get("Projection", {})
    kind = projection.get("ProjectionType", "ALL")
    if kind == "ALL":
        return item
    keep = set(table_keys) | set(index_keys)
    if kind == "INCLUDE":
        keep |= set(projection.get("NonKeyAttributes", []))
    return {k: v for k, v in item.items() if k in keep}
