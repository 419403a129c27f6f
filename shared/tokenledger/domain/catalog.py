"""The token package catalog: data in the repo, validated when loaded.

Plain frozen dataclasses (no pydantic: three functions read the catalog on their cold path,
docs/benchmarks.md); `parse_catalog` refuses a malformed catalog with `CatalogInvalid` naming the
field, so a bad `packages.json` fails the function's first use and the tests.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from tokenledger.domain.model import AMOUNT_MAX

PACKAGE_ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
CURRENCY_PATTERN = re.compile(r"[a-z]{3}")
STRIPE_PRICE_PATTERN = re.compile(r"price_[A-Za-z0-9_]{1,200}")
NAME_CHARS_MAX = 100


class CatalogInvalid(ValueError):
    """The catalog data is malformed (the message names the field)."""


@dataclass(frozen=True, slots=True)
class Price:
    amount: int  # in the currency's minor unit (cents for usd), > 0
    currency: str

    def as_dict(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency}


@dataclass(frozen=True, slots=True)
class Package:
    package_id: str
    name: str
    tokens: int
    price: Price
    # A Stripe Price (price_...) to sell this package with; its unit_amount and currency must be
    # `price`, which the webhook checks. Never shown by GET /v1/packages (not in `as_dict`).
    stripe_price_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"package_id": self.package_id, "name": self.name, "tokens": self.tokens, "price": self.price.as_dict()}


@dataclass(frozen=True, slots=True)
class Catalog:
    packages: tuple[Package, ...]

    def find(self, package_id: str) -> Package | None:
        return next((p for p in self.packages if p.package_id == package_id), None)


def _fields(raw: Any, where: str, required: set[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise CatalogInvalid(f"{where}: an object is required")
    missing, extra = required - raw.keys(), raw.keys() - required - optional
    if missing or extra:
        raise CatalogInvalid(f"{where}: missing {sorted(missing)}, unexpected {sorted(extra)}")
    return raw


def _int(value: Any, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise CatalogInvalid(f"{where}: an integer {low}..{high} is required")
    return value


def _text(value: Any, where: str, pattern: re.Pattern[str] | None = None, max_chars: int = 1000) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= max_chars:
        raise CatalogInvalid(f"{where}: a string of 1..{max_chars} characters is required")
    if pattern is not None and pattern.fullmatch(value) is None:
        raise CatalogInvalid(f"{where}: must match {pattern.pattern}")
    return value


def _package(raw: Any, where: str) -> Package:
    fields = _fields(raw, where, {"package_id", "name", "tokens", "price"}, frozenset({"stripe_price_id"}))
    price = _fields(fields["price"], f"{where}.price", {"amount", "currency"})
    stripe_price_id = fields.get("stripe_price_id")
    return Package(
        package_id=_text(fields["package_id"], f"{where}.package_id", PACKAGE_ID_PATTERN),
        name=_text(fields["name"], f"{where}.name", max_chars=NAME_CHARS_MAX),
        tokens=_int(fields["tokens"], f"{where}.tokens", 1, AMOUNT_MAX),
        price=Price(
            amount=_int(price["amount"], f"{where}.price.amount", 1, 2**63 - 1),
            currency=_text(price["currency"], f"{where}.price.currency", CURRENCY_PATTERN),
        ),
        stripe_price_id=None
        if stripe_price_id is None
        else _text(stripe_price_id, f"{where}.stripe_price_id", STRIPE_PRICE_PATTERN, 210),
    )


def parse_catalog(text: str) -> Catalog:
    """The catalog in `text`; CatalogInvalid if any package is malformed or two share an id."""
    raw = _fields(json.loads(text), "catalog", {"packages"})
    if not isinstance(raw["packages"], list) or not raw["packages"]:
        raise CatalogInvalid("catalog.packages: a non-empty list is required")
    packages = tuple(_package(p, f"catalog.packages[{i}]") for i, p in enumerate(raw["packages"]))
    ids = [p.package_id for p in packages]
    if len(ids) != len(set(ids)):
        raise CatalogInvalid("package_id values must be unique")
    return Catalog(packages)


@cache
def load_catalog() -> Catalog:
    """The catalog shipped in the package (`catalog/packages.json`), validated once."""
    text = resources.files("tokenledger.catalog").joinpath("packages.json").read_text(encoding="utf-8")
    return parse_catalog(text)
