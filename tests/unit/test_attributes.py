"""The one DynamoDB attribute codec (adapters/attributes.py) the adapters and chaos's snapshot share."""

from __future__ import annotations

import pytest

from tokenledger.adapters.attributes import attribute_value, plain_item, plain_value
from tokenledger.domain.errors import InvariantViolation


def test_an_item_reads_back_as_plain_python_with_numbers_as_int() -> None:
    item = {
        "pk": {"S": "stake#u1"},
        "amount": {"N": "-40"},
        "open": {"BOOL": False},
        "gone": {"NULL": True},
        "meta": {"M": {"level": {"N": "7"}, "tags": {"L": [{"S": "a"}, {"N": "2"}]}}},
        "names": {"SS": ["x", "y"]},
    }
    assert plain_item(item) == {
        "pk": "stake#u1",
        "amount": -40,
        "open": False,
        "gone": None,
        "meta": {"level": 7, "tags": ["a", 2]},
        "names": ["x", "y"],
    }


def test_what_is_written_reads_back_the_same() -> None:
    record = {"outcome": "credited", "tokens": 500, "replayed": True, "detail": {"level": 0, "note": "n"}}
    written = {name: attribute_value(value) for name, value in record.items()}
    assert written["tokens"] == {"N": "500"}
    assert written["replayed"] == {"BOOL": True}  # a bool is never written as a number
    assert plain_item(written) == record
    assert plain_value({"M": {}}) == {}


def test_a_type_the_tables_never_hold_is_refused_not_guessed() -> None:
    with pytest.raises(InvariantViolation, match="unsupported attribute type float"):
        attribute_value(1.5)
