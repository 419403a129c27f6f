"""Stripe signature verification with the official package, and the cached signing secret."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from infra.stripe_events import stripe_signature
from tokenledger.adapters.stripe_signature import (
    PAYLOAD_BYTES_MAX,
    SIGNATURE_TOLERANCE_S,
    StripeSignatureVerifier,
    secret_from_secrets_manager,
)
from tokenledger.domain.errors import InvalidSignature
from tokenledger.http.api import problem_status

SECRET = "whsec_unit"
NOT_AN_EVENT = '{"id": "evt_1", "type": "x", "data": {"object": []}}'
EVENT = json.dumps({"id": "evt_1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_1"}}})


def sign(payload: str, secret: str = SECRET, timestamp: int | None = None, scheme: str = "v1") -> str:
    """As Stripe does (infra.stripe_events), with this module's secret unless told."""
    return stripe_signature(payload, secret, timestamp=timestamp, scheme=scheme)


@pytest.fixture
def verifier() -> StripeSignatureVerifier:
    return StripeSignatureVerifier(lambda: SECRET)


def test_a_fresh_signature_over_the_exact_body_yields_the_event(verifier: StripeSignatureVerifier) -> None:
    assert verifier.verify(EVENT, sign(EVENT))["id"] == "evt_1"
    assert verifier.verify(EVENT.encode(), sign(EVENT))["type"] == "checkout.session.completed"


def test_one_of_several_signatures_matching_is_enough_as_during_a_secret_roll(
    verifier: StripeSignatureVerifier,
) -> None:
    old = sign(EVENT, "whsec_old")
    header = f"{sign(EVENT)},v1={old.split('v1=')[1]}"
    assert verifier.verify(EVENT, header)["id"] == "evt_1"


def test_the_tolerance_is_300_seconds() -> None:
    assert SIGNATURE_TOLERANCE_S == 300


REFUSED = {
    "no header": (EVENT, None),
    "empty header": (EVENT, ""),
    "timestamp only": (EVENT, "t=1"),
    "nonsense header": (EVENT, "nonsense"),
    "another secret": (EVENT, sign(EVENT, "whsec_other")),
    "v0 scheme only": (EVENT, sign(EVENT, scheme="v0")),
    "tampered body": (EVENT.replace("cs_1", "cs_2"), sign(EVENT)),
    "stale": (EVENT, sign(EVENT, timestamp=int(time.time()) - SIGNATURE_TOLERANCE_S - 5)),
    "not JSON": ("not json", sign("not json")),
    "JSON list": ("[1, 2]", sign("[1, 2]")),
    "object not a dict": (NOT_AN_EVENT, sign(NOT_AN_EVENT)),
    "not UTF-8": (b"\xff\xfe", "t=1,v1=00"),
    "too large": ("x" * (PAYLOAD_BYTES_MAX + 1), sign("x")),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_anything_stripe_did_not_sign_just_now_is_invalid_signature(
    verifier: StripeSignatureVerifier, case: str
) -> None:
    payload, header = REFUSED[case]
    with pytest.raises(InvalidSignature) as refused:
        verifier.verify(payload, header)
    assert refused.value.code == "invalid_signature" and problem_status(refused.value) == 400
    assert SECRET not in refused.value.detail


def test_an_empty_secret_verifies_nothing() -> None:
    with pytest.raises(InvalidSignature):
        StripeSignatureVerifier(lambda: "").verify(EVENT, sign(EVENT, ""))


@pytest.fixture
def secrets() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_the_secret_is_read_once_then_served_from_the_cache_until_max_age(secrets: Any) -> None:
    arn = secrets.create_secret(Name="stripe-signing", SecretString=" whsec_first\n")["ARN"]
    read = secret_from_secrets_manager(arn, client=secrets, max_age_s=300)
    assert read() == "whsec_first"
    secrets.put_secret_value(SecretId=arn, SecretString="whsec_second")
    assert read() == "whsec_first"  # cached: one GetSecretValue per environment per max age
    assert secret_from_secrets_manager(arn, client=secrets, max_age_s=0)() == "whsec_second"
