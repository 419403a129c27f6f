"""The token package catalog: data in the repo, validated when loaded."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from tokenledger.domain.model import AMOUNT_MAX


class Price(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    amount: StrictInt = Field(gt=0, description="In the currency's minor unit (cents for usd).")
    currency: str = Field(pattern=r"^[a-z]{3}$")


class Package(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    package_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    name: str = Field(min_length=1, max_length=100)
    tokens: StrictInt = Field(ge=1, le=AMOUNT_MAX)
    price: Price
    # A Stripe Price (price_...) to sell this package with; its unit_amount and currency must be
    # `price`, which the webhook checks. Never shown by GET /v1/packages (excluded from dumps).
    stripe_price_id: str | None = Field(default=None, pattern=r"^price_[A-Za-z0-9_]{1,200}$", exclude=True)


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    packages: tuple[Package, ...] = Field(min_length=1)

    @field_validator("packages")
    @classmethod
    def _unique_ids(cls, packages: tuple[Package, ...]) -> tuple[Package, ...]:
        ids = [p.package_id for p in packages]
        if len(ids) != len(set(ids)):
            raise ValueError("package_id values must be unique")
        return packages

    def find(self, package_id: str) -> Package | None:
        return next((p for p in self.packages if p.package_id == package_id), None)


def parse_catalog(text: str) -> Catalog:
    return Catalog.model_validate(json.loads(text))


@cache
def load_catalog() -> Catalog:
    """The catalog shipped in the package (`catalog/packages.json`), validated once."""
    text = resources.files("tokenledger.catalog").joinpath("packages.json").read_text(encoding="utf-8")
    return parse_catalog(text)
