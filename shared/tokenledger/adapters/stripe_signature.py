"""Stripe webhook signatures, checked with the official `stripe` package, and the signing secret.

`stripe` is imported on first use, inside `verify`: only the webhook function ships it
(functions/stripe_webhook/requirements.txt), and nothing else that imports this package
pays for it. The secret comes from Secrets Manager through Powertools parameters, cached
for `SECRET_MAX_AGE_S` per execution environment.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tokenledger.domain.errors import InvalidSignature

SIGNATURE_TOLERANCE_S = 300  # the contract: signatures older than this are refused
SECRET_MAX_AGE_S = 300  # a rotated secret is picked up within this time (Stripe overlaps old and new)
PAYLOAD_BYTES_MAX = 512 * 1024  # Stripe's events are far smaller; refuse anything larger unread

SecretReader = Callable[[], str]


class StripeSignatureVerifier:
    """Verify `Stripe-Signature` (`t=<unix>,v1=<hex hmac-sha256 of "t.payload">`), then parse the event."""

    def __init__(self, secret: SecretReader, *, tolerance_s: int = SIGNATURE_TOLERANCE_S) -> None:
        self._secret = secret
        self._tolerance_s = tolerance_s

    def verify(self, payload: str | bytes, header: str | None) -> dict[str, Any]:
        """The event as a dict, or `InvalidSignature` (400) for anything Stripe did not sign just now.

        Missing or malformed header, wrong secret, tampered body, a timestamp older than the
        tolerance, a body that is not UTF-8 or not a JSON event: all the same refusal, and the
        detail never echoes the header, the body or the secret.
        """
        import stripe

        if len(payload) > PAYLOAD_BYTES_MAX:
            raise InvalidSignature("the body is larger than any Stripe event")
        if not header:
            raise InvalidSignature("the Stripe-Signature header is missing")
        try:
            stripe.WebhookSignature.verify_header(payload, header, self._secret(), tolerance=self._tolerance_s)
        except stripe.SignatureVerificationError:
            raise InvalidSignature(
                "the Stripe-Signature header does not match this body and the endpoint's signing secret, "
                f"or is older than {self._tolerance_s} s"
            ) from None
        except UnicodeDecodeError:
            raise InvalidSignature("the body is not UTF-8") from None
        try:
            event = json.loads(payload)
        except ValueError:
            raise InvalidSignature("the signed body is not JSON") from None
        if not _looks_like_event(event):
            raise InvalidSignature("the signed body is not a Stripe event")
        return dict(event)


def _looks_like_event(event: Any) -> bool:
    if not isinstance(event, dict):
        return False
    data = event.get("data")
    return (
        isinstance(event.get("id"), str)
        and isinstance(event.get("type"), str)
        and isinstance(data, dict)
        and isinstance(data.get("object"), dict)
    )


def secret_from_secrets_manager(name: str, *, client: Any = None, max_age_s: int = SECRET_MAX_AGE_S) -> SecretReader:
    """A reader of the secret string `name` (name or ARN), cached `max_age_s` by Powertools parameters.

    One provider per execution environment (each has its own cache, as on Lambda). The
    value is the bare signing secret (`whsec_...`); surrounding whitespace is ignored.
    """
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    provider = SecretsProvider(boto3_client=client)

    def read() -> str:
        value = provider.get(name, max_age=max_age_s)
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str):
            raise TypeError("the Stripe signing secret must be a string")
        return value.strip()

    return read
