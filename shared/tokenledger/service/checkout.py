"""Checkout Sessions: a package from the catalog, sold through Stripe Checkout, once per key.

`POST /v1/checkout-sessions` in steps (docs/stripe.md, "Buying tokens"):

1. The caller's idempotency record (`idem|POST /v1/checkout-sessions|<caller>|<key>`): if it
   exists, its session is answered again (`Idempotent-Replayed: true`), or 422
   `idempotency_key_reused` for another body. Stripe is not called.
2. The package from the catalog (422 `unknown_package`) and the redirect URLs, defaulted from
   the template and checked against its allowed origins (422 `redirect_not_allowed`).
3. One Checkout Session at Stripe, with an `Idempotency-Key` derived from the caller and
   their key: a retry after a lost answer gets the same session from Stripe, never a second.
4. The record, put only now and only if absent. A failure anywhere before it stores nothing,
   so a retry with the same key asks Stripe again (and Stripe replays its session if it had
   made one). Two racing requests with one key: Stripe makes one session; the loser of the
   put answers the winner's record.

Only a session whose price is the catalog's is handed out: the webhook credits a purchase
only when `amount_subtotal` and `currency` equal the catalog price, so a session priced
otherwise (a Stripe Price id whose amount drifted from the catalog) would take money
without giving tokens. It is answered 502 instead, and logged.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tokenledger.domain.catalog import Catalog, Package
from tokenledger.domain.errors import (
    PaymentProviderUnavailable,
    RedirectNotAllowed,
    UnknownPackage,
    ValidationFailed,
)
from tokenledger.domain.model import ID_CHARS_MAX
from tokenledger.domain.redirects import check_redirect, parse_allowed_origins
from tokenledger.service.idempotency import IDEMPOTENCY_TTL_S, IdempotencyScope
from tokenledger.service.ledger import WriteResult
from tokenledger.service.ports import CheckoutRecords, CreatedSession, PaymentProvider, SessionRequest, StoredResponse

CHECKOUT_ROUTE = "POST /v1/checkout-sessions"
STRIPE_KEY_PREFIX = "tokenledger-checkout-"
# What the webhook accepts as metadata.user_id (stripe_credits): a caller it could not credit may not pay.
_PAYABLE_USER = re.compile(rf"^[A-Za-z0-9][A-Za-z0-9._:@-]{{0,{ID_CHARS_MAX - 1}}}$")


@dataclass(frozen=True, slots=True)
class CheckoutSettings:
    """The template's checkout parameters, read once per execution environment."""

    allowed_origins: frozenset[str]
    success_url: str
    cancel_url: str

    @classmethod
    def parse(cls, *, allowed_origins: str, success_url: str, cancel_url: str) -> CheckoutSettings:
        """Refuses (ValueError) defaults that are not on an allowed origin: a deployment error, found at cold start."""
        origins = parse_allowed_origins(allowed_origins)
        for name, url in (("success", success_url), ("cancel", cancel_url)):
            try:
                check_redirect(url, origins, field=f"{name}_url")
            except RedirectNotAllowed as error:
                raise ValueError(f"the default {name} URL {url!r} is not on an allowed origin") from error
        return cls(allowed_origins=origins, success_url=success_url, cancel_url=cancel_url)


def stripe_idempotency_key(scope: IdempotencyScope) -> str:
    """The key Stripe sees: derived from the caller's scope and key (not from the body), at most 255 chars.

    Not from the body: a retry with another body after a lost answer must not make a second
    session; Stripe refuses the changed parameters instead (`idempotency_key_reused`).
    """
    digest = hashlib.sha256(f"{scope.route}\n{scope.caller}\n{scope.key}".encode()).hexdigest()
    return STRIPE_KEY_PREFIX + digest


def rfc3339(epoch_s: int) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


class CheckoutSessions:
    """The use case behind `POST /v1/checkout-sessions`."""

    def __init__(
        self,
        *,
        provider: PaymentProvider,
        records: CheckoutRecords,
        settings: CheckoutSettings,
        catalog: Callable[[], Catalog],
        clock: Callable[[], float],
        on_price_mismatch: Callable[[dict[str, Any]], None] = lambda _: None,
    ) -> None:
        self.provider = provider
        self.records = records
        self.settings = settings
        self.catalog = catalog
        self.clock = clock
        self.on_price_mismatch = on_price_mismatch

    def create(
        self,
        *,
        user_id: str,
        package_id: str,
        success_url: str | None,
        cancel_url: str | None,
        scope: IdempotencyScope,
    ) -> WriteResult:
        stored = self.records.get(scope.pk)
        if stored is not None:
            replay = scope.check_replay(stored)
            return WriteResult(body=replay.body, replayed=True)
        package = self.catalog().find(package_id)
        if package is None:
            raise UnknownPackage(f"no package {package_id!r} in the catalog; GET /v1/packages lists them")
        request = SessionRequest(
            user_id=self._payable(user_id),
            package=package,
            success_url=self._redirect(success_url, self.settings.success_url, "success_url"),
            cancel_url=self._redirect(cancel_url, self.settings.cancel_url, "cancel_url"),
        )
        session = self.provider.create_checkout_session(request, idempotency_key=stripe_idempotency_key(scope))
        self._check_price(session, package)
        body = {
            "checkout_session_id": session.session_id,
            "url": session.url,
            "package_id": package.package_id,
            "tokens": package.tokens,
            "price": package.price.as_dict(),
            "expires_at": rfc3339(session.expires_at),
        }
        response = StoredResponse(request_hash=scope.request_hash, body=body)
        expires_at = int(self.clock()) + IDEMPOTENCY_TTL_S
        earlier = self.records.put_if_absent(scope.pk, response, expires_at=expires_at)
        if earlier is not None:  # a racing request with this key stored first: answer as it did
            replay = scope.check_replay(earlier)
            return WriteResult(body=replay.body, replayed=True)
        return WriteResult(body=body)

    def _redirect(self, given: str | None, default: str, field: str) -> str:
        return check_redirect(default if given is None else given, self.settings.allowed_origins, field=field)

    @staticmethod
    def _payable(user_id: str) -> str:
        if not _PAYABLE_USER.fullmatch(user_id):
            raise ValidationFailed(
                "this account's id cannot be named in a Stripe payment, so a purchase could not be credited",
                errors=[{"loc": ["token", "sub"], "type": "invalid"}],
            )
        return user_id

    def _check_price(self, session: CreatedSession, package: Package) -> None:
        expected = package.price
        if session.amount_subtotal == expected.amount and (session.currency or "").lower() == expected.currency:
            return
        self.on_price_mismatch(
            {
                "checkout_session_id": session.session_id,
                "package_id": package.package_id,
                "expected_amount": expected.amount,
                "expected_currency": expected.currency,
                "stripe_amount_subtotal": session.amount_subtotal,
                "stripe_currency": session.currency,
            }
        )
        raise PaymentProviderUnavailable(
            "the payment provider priced this package differently from the catalog; no session is handed out "
            "(an operator must align the catalog and the Stripe Price)"
        )
