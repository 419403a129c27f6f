"""tokenledger.http.shapes: the strict check only accepts what pydantic accepts, with the same values.

A request the strict check accepts never meets pydantic (that is the cold-start cut), so
every input here is also given to the pydantic model built from the same declaration
(`schemas.model_of`): where the strict check accepts, pydantic must accept and dump the same
values; valid requests must be accepted (else every request would load pydantic).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infra.lambdas import load_module
from infra.template import Stack
from tokenledger.http.requests import AdminEntryIn, CheckoutSessionIn, CommitmentIn
from tokenledger.http.schemas import model_of
from tokenledger.http.shapes import Refused, RoutePlan, Shape

STACK = Stack()
OK_COMMITMENT = {"prediction_id": "p-1", "amount": 5}
CORPUS: list[Any] = [
    None,
    [],
    [OK_COMMITMENT],
    "text",
    12,
    {},
    OK_COMMITMENT,
    OK_COMMITMENT | {"metadata": {"k": "v"}},
    OK_COMMITMENT | {"metadata": {f"k{i}": "v" for i in range(21)}},
    OK_COMMITMENT | {"metadata": {"": "v"}},
    OK_COMMITMENT | {"metadata": {"k": 1}},
    OK_COMMITMENT | {"amount": True},
    OK_COMMITMENT | {"amount": 1.0},
    OK_COMMITMENT | {"amount": "5"},
    OK_COMMITMENT | {"amount": 0},
    OK_COMMITMENT | {"amount": 1_000_000_001},
    OK_COMMITMENT | {"prediction_id": "p-1\n"},
    OK_COMMITMENT | {"prediction_id": "bad id"},
    OK_COMMITMENT | {"extra": 1},
    {"type": "grant", "amount": 5, "reason": "r"},
    {"type": "grant", "amount": 5, "reason": " r "},
    {"type": "grant", "amount": 5, "reason": "\u3000"},
    {"type": "grant", "amount": -5, "reason": "r"},
    {"type": "adjustment", "amount": -5, "reason": "r", "related_id": "x-1"},
    {"type": "adjustment", "amount": -5, "reason": "r", "related_id": None},
    {"type": "purchase", "amount": 5, "reason": "r"},
    {"package_id": "starter"},
    {"package_id": "starter", "success_url": None, "cancel_url": "https://a.example/x"},
    {"package_id": 5},
    {"operations": [{"type": "grant", "amount": 5, "user_id": "u-1"}], "reason": "r"},
    {"operations": [], "reason": "r"},
    {"operations": [{"type": "grant", "amount": 5, "user_id": "u-1"}] * 101, "reason": "r"},
    {"reason": "r", "outcome": "cancelled"},
    {"reason": "r", "outcome": "resolved", "payouts": [{"user_id": "u-1", "amount": 3}], "house_contribution": 0},
    {"reason": "r", "outcome": "resolved", "payouts": None, "house_contribution": -1},
    {"reason": None},
]


def _shapes() -> list[type[Shape]]:
    """Every request shape the handlers declare (the shared ones and the functions' own)."""
    found: dict[str, type[Shape]] = {}
    for spec in STACK.functions().values():
        module = load_module(spec) if spec.logical_id in ("AdminFunction", "AuditFunction") else None
        for value in vars(module).values() if module else ():
            if isinstance(value, type) and issubclass(value, Shape) and value is not Shape:
                found[value.__name__] = value
    for shape in (CommitmentIn, AdminEntryIn, CheckoutSessionIn):
        found[shape.__name__] = shape
    return [found[name] for name in sorted(found)]


def _agree(shape: type[Shape], value: Any) -> bool:
    """True if the strict check accepted `value`; fails if pydantic disagrees with what it accepted."""
    try:
        accepted = shape.accept(value)
    except Refused:
        return False
    model = model_of(shape).model_validate(value)
    assert model.model_dump() == accepted.model_dump(), (shape.__name__, value)
    return True


@pytest.fixture
def shapes(aws: Any) -> list[type[Shape]]:
    return _shapes()


def test_what_the_strict_check_accepts_pydantic_accepts_alike(shapes: list[type[Shape]]) -> None:
    accepted = {shape.__name__: [v for v in CORPUS if _agree(shape, v)] for shape in shapes}
    # The valid bodies are taken without pydantic; the bad ones are all left to it.
    assert accepted["CommitmentIn"] == [CORPUS[6], CORPUS[7]]
    assert len(accepted["AdminEntryIn"]) == 3 and len(accepted["BatchIn"]) == 1
    assert len(accepted["CheckoutSessionIn"]) == 2 and len(accepted["SettlementIn"]) == 2
    assert accepted["RepairIn"] == [{}, {"reason": None}]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=6,
)
_near_commitment = st.fixed_dictionaries(
    {},
    optional={
        "prediction_id": st.sampled_from(["p-1", "", " p", "p" * 161, "a:b@c.d-e_f"]) | _json,
        "amount": st.sampled_from([1, 0, -1, 10**9, 10**9 + 1]) | _json,
        "metadata": st.dictionaries(st.text(max_size=41), st.text(max_size=3), max_size=3) | _json,
        "x": _json,
    },
)


@settings(max_examples=150, deadline=None)
@given(_near_commitment)
def test_near_misses_of_a_commitment_agree(value: dict[str, Any]) -> None:
    _agree(CommitmentIn, value)


@pytest.mark.parametrize("function", ["ReadsFunction", "WritesFunction", "AdminFunction", "AuditFunction"])
def test_every_route_is_checked_without_pydantic(aws: Any, function: str) -> None:
    # A route the strict check cannot read would send every request to pydantic.
    app = load_module(STACK.functions()[function]).app
    for route in app._static_routes + app._dynamic_routes:
        assert RoutePlan(route.func).checkable, (function, route.rule)


def test_the_request_path_imports_no_pydantic() -> None:
    code = (
        "import sys, tokenledger.coldstart, tokenledger.http.api, tokenledger.http.requests, "
        "tokenledger.domain.catalog\n"
        "tokenledger.domain.catalog.load_catalog()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('pydantic', 'pydantic_core')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.replace("'", '"')) == []
