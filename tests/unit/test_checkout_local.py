"""`make run`'s Stripe settings: the webhook secret from the environment, real or fake Stripe, redirects to itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from infra import devauth
from infra.checkout_local import LOCAL_API_KEY
from infra.local import LocalStack

CHECKOUT_ENV = ("CHECKOUT_ALLOWED_ORIGINS", "CHECKOUT_SUCCESS_URL", "CHECKOUT_CANCEL_URL", "STRIPE_API_BASE")


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(devauth.DEVKEY_ENV_VAR, str(tmp_path))
    for name in (*CHECKOUT_ENV, "STRIPE_API_KEY", "STRIPE_WEBHOOK_SECRET"):
        monkeypatch.setenv(name, "")  # restored after the test, whatever bind() sets


def test_the_webhook_secret_of_stripe_listen_is_taken_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert LocalStack().stripe_signing_secret == devauth.stripe_webhook_secret()  # the development one
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_from_stripe_listen")
    assert LocalStack().stripe_signing_secret == "whsec_from_stripe_listen"


def test_a_live_key_is_refused_and_a_test_key_means_the_real_stripe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_abc")
    with pytest.raises(ValueError, match="test-mode key"):
        LocalStack()
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_abc")
    real = LocalStack()
    real.bind("http://127.0.0.1:3001")
    assert real.stripe_api_key == "sk_test_abc"
    assert os.environ["STRIPE_API_BASE"] == ""  # Stripe's own API


def test_without_a_key_checkout_goes_to_the_fake_stripe_and_back_to_this_stack() -> None:
    local = LocalStack()
    local.bind("http://0.0.0.0:3002")

    assert local.stripe_api_key is None and local.checkout is not None
    assert local.checkout.stripe.api_key == LOCAL_API_KEY
    assert os.environ["STRIPE_API_BASE"] == "http://127.0.0.1:3002/stripe"
    assert (
        os.environ["CHECKOUT_SUCCESS_URL"] == "http://127.0.0.1:3002/checkout/complete?session_id={CHECKOUT_SESSION_ID}"
    )
    assert os.environ["CHECKOUT_CANCEL_URL"] == "http://127.0.0.1:3002/checkout/cancelled"
    assert {"http://127.0.0.1:3002", "http://localhost:3002"} <= set(os.environ["CHECKOUT_ALLOWED_ORIGINS"].split(","))
