"""Stripe webhook signatures, checked with the official `stripe` package, and the signing secret.

`stripe` is imported on first use, inside `verify`: only the webhook function ships it
(functions/stripe_webhook/requirements.txt), and nothing else that imports this package
pays for it. The secret comes from Secrets Manager through Powertools parameters, cached
for `SECRET_MAX_AGE_S` per execution environment.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from tokenledger.domain.errors import InvalidSignature

SIGNATURE_TOLERANCE_S = 300  # the contract: signatures older than this are refused
# Stripe's library refuses old timestamps only; one from the future would stay valid for ever
# (a leaked secret could sign events that replay until then). Clock skew is seconds; allow 300.
SIGNATURE_FUTURE_TOLERANCE_S = 300
SECRET_MAX_AGE_S = 300  # a rotated secret is picked up within this time (Stripe overlaps old and new)
HEADER_CHARS_MAX = 2048  # a timestamp and a few signatures (several during a secret's roll)
PAYLOAD_BYTES_MAX = 512 * 1024  # Stripe's events are far smaller; refuse anything larger unread

SecretReader = Callable[[], str]


class StripeSignatureVerifier:
    """Verify `Stripe-Signature` (`t=<unix>,v1=<hex hmac-sha256 of "t.payload">`), then parse the event."""

    def __init__(
        self,
        secret: SecretReader,
        *,
        tolerance_s: int = SIGNATURE_TOLERANCE_S,
        future_tolerance_s: int = SIGNATURE_FUTURE_TOLERANCE_S,
        now_s: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._tolerance_s = tolerance_s
        self._future_tolerance_s = future_tolerance_s
        self._now_s = now_s

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
        if len(header) > HEADER_CHARS_MAX:
            raise InvalidSignature("the Stripe-Signature header is longer than any Stripe signs")
        stamps = [p[2:] for p in header.split(",") if p.startswith("t=")]
        if stamps and stamps[0].isdigit() and int(stamps[0]) > self._now_s() + self._future_tolerance_s:
            raise InvalidSignature(f"the Stripe-Signature timestamp is more than {self._future_tolerance_s} s ahead")
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
        except (ValueError, RecursionError):
            raise InvalidSignature("the signed body is not JSON an event could be") from None
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
