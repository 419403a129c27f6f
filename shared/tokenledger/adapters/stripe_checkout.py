"""Checkout Sessions at Stripe (the official `stripe` package) and their idempotency records on DynamoDB.

`stripe` is imported on the first session only, and only the checkout function ships it
(functions/checkout/requirements.txt). The secret API key comes from the Secrets Manager
secret named by `STRIPE_API_KEY_SECRET_NAME`, cached per execution environment like the
webhook's signing secret; `STRIPE_API_BASE`, when set and non-empty, replaces Stripe's API
base URL (the local stack's fake Stripe, stripe-mock). Nothing here logs the key, the
caller's URLs or Stripe's whole answer.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError

from tokenledger.adapters.stripe_signature import SecretReader
from tokenledger.domain.errors import IdempotencyKeyReused, PaymentProviderUnavailable
from tokenledger.service.ports import CreatedSession, SessionRequest, StoredResponse

STRIPE_CONNECT_TIMEOUT_S = 2
STRIPE_READ_TIMEOUT_S = 6
# Stripe's own retries (connection errors, 409 "key in use", 5xx), with its backoff from 0.5 s:
# worst case 3 x 8 s + 1.5 s, inside the function's 30 s timeout.
STRIPE_NETWORK_RETRIES_MAX = 2
STRIPE_KEY_GENERATIONS_MAX = 3  # keys tried per request when Stripe replays a stored 5xx (see below)
API_KEY_PREFIXES = ("sk_", "rk_")  # secret or restricted keys; a publishable key cannot create sessions

_UNAVAILABLE = "the payment provider did not create the session; retry with the same Idempotency-Key later"

logger = Logger(child=True)


def _replayed_server_error(error: Any) -> bool:
    """A 5xx that Stripe's idempotency layer replayed from an earlier request with this key."""
    status = getattr(error, "http_status", None)
    headers = getattr(error, "headers", None) or {}
    replayed = next((str(v) for k, v in dict(headers).items() if str(k).lower() == "idempotent-replayed"), "")
    return isinstance(status, int) and status >= 500 and replayed.lower() == "true"


class DynamoCheckoutRecords:
    """`CheckoutRecords` in the idempotency table: the same item shape as the ledger's records."""

    def __init__(self, client: Any, *, table: str) -> None:
        self.client = client
        self.table = table

    def get(self, pk: str) -> StoredResponse | None:
        from tokenledger.adapters.dynamodb import stored_response_from_item

        item = self.client.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
        return stored_response_from_item(item) if item and "request_hash" in item else None

    def put_if_absent(self, pk: str, response: StoredResponse, *, expires_at: int) -> StoredResponse | None:
        from tokenledger.adapters.dynamodb import stored_response_from_item, stored_response_item

        item = stored_response_item(pk, response, expires_at=expires_at)
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item")
            if old and "request_hash" in old:
                return stored_response_from_item(old)
            earlier = self.get(pk)  # engines that do not return the item with the refusal
            if earlier is None:
                raise
            return earlier
        return None


class StripeCheckoutProvider:
    """`PaymentProvider` on Stripe's API: `POST /v1/checkout/sessions` with an idempotency key."""

    def __init__(self, api_key: SecretReader, *, api_base: str | None = None) -> None:
        self._api_key = api_key
        self._api_base = api_base or None
        self._client: Any = None
        self._client_key: str | None = None

    def _stripe_client(self) -> Any:
        try:
            key = self._api_key()
        except Exception as error:
            logger.error("the Stripe API key could not be read", extra={"error_type": type(error).__name__})
            raise PaymentProviderUnavailable("the payment provider is not reachable right now; retry later") from None
        if not key.startswith(API_KEY_PREFIXES):
            logger.error("the Stripe API key secret holds no secret key (sk_... or rk_...); put one (docs/stripe.md)")
            raise PaymentProviderUnavailable("the payment provider is not configured; retry later")
        if self._client is None or key != self._client_key:
            import stripe

            options: dict[str, Any] = {
                "max_network_retries": STRIPE_NETWORK_RETRIES_MAX,
                "http_client": stripe.RequestsClient(timeout=(STRIPE_CONNECT_TIMEOUT_S, STRIPE_READ_TIMEOUT_S)),
            }
            if self._api_base:
                options["base_addresses"] = {"api": self._api_base}
            self._client = stripe.StripeClient(key, **options)
            self._client_key = key
        return self._client

    @staticmethod
    def params(request: SessionRequest) -> dict[str, Any]:
        """The session: payment mode, the caller and package named three times, the catalog's price."""
        package = request.package
        line_item: dict[str, Any] = {"quantity": 1}
        if package.stripe_price_id:
            line_item["price"] = package.stripe_price_id
        else:
            line_item["price_data"] = {
                "currency": package.price.currency,
                "unit_amount": package.price.amount,
                "product_data": {"name": package.name, "metadata": {"package_id": package.package_id}},
            }
        return {
            "mode": "payment",
            "line_items": [line_item],
            "client_reference_id": request.user_id,
            "metadata": request.metadata,
            "payment_intent_data": {"metadata": request.metadata},
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
        }

    def create_checkout_session(self, request: SessionRequest, *, idempotency_key: str) -> CreatedSession:
        """One session, keyed `<idempotency_key>` (then `-1`, `-2` only past failures Stripe replays).

        Stripe stores the first answer to a key for 24 h, a 500 included, and replays it with
        `Idempotent-Replayed: true`. A caller's retry after a Stripe failure would then get
        that failure again for a day; so a replayed 5xx moves on to the next key of a fixed
        sequence, which every retry walks in the same order: the first key that produced a
        session keeps answering it, so one caller key still yields one session handed out.
        """
        import stripe

        client = self._stripe_client()
        params = self.params(request)
        for generation in range(STRIPE_KEY_GENERATIONS_MAX):
            key = idempotency_key if generation == 0 else f"{idempotency_key}-{generation}"
            try:
                session = client.v1.checkout.sessions.create(params=params, options={"idempotency_key": key})
            except stripe.IdempotencyError as error:
                if error.http_status == 400:  # the key's first request had other parameters
                    raise IdempotencyKeyReused(
                        "this Idempotency-Key was already used with a different request on this route"
                    ) from None
                self._log_failure(error)
                raise PaymentProviderUnavailable(_UNAVAILABLE) from None
            except stripe.StripeError as error:
                self._log_failure(error)
                if _replayed_server_error(error):
                    continue
                raise PaymentProviderUnavailable(_UNAVAILABLE) from None
            return self._created(session)
        raise PaymentProviderUnavailable(_UNAVAILABLE)

    @staticmethod
    def _created(session: Any) -> CreatedSession:
        fields = session.to_dict() if hasattr(session, "to_dict") else session
        try:
            created = CreatedSession(
                session_id=fields["id"],
                url=fields["url"],
                expires_at=fields["expires_at"],
                amount_subtotal=fields.get("amount_subtotal"),
                currency=fields.get("currency"),
            )
        except (KeyError, TypeError, AttributeError):
            created = None
        if (
            created is None
            or not isinstance(created.session_id, str)
            or not created.session_id.startswith("cs_")
            or not isinstance(created.url, str)
            or not created.url.startswith(("https://", "http://"))
            or not isinstance(created.expires_at, int)
            or isinstance(created.expires_at, bool)
        ):
            logger.error("Stripe answered a session without id, url or expires_at")
            raise PaymentProviderUnavailable("the payment provider answered something unexpected; retry later")
        return created

    @staticmethod
    def _log_failure(error: Any) -> None:
        logger.warning(
            "Stripe did not create a checkout session",
            extra={
                "error_type": type(error).__name__,
                "http_status": getattr(error, "http_status", None),
                "stripe_code": getattr(error, "code", None),
                "stripe_request_id": getattr(error, "request_id", None),
            },
        )


def log_price_mismatch(details: dict[str, Any]) -> None:
    """`CheckoutSessions.on_price_mismatch`: an error in the function's log."""
    logger.error("Stripe priced a checkout session differently from the catalog", extra=details)
