"""The HTTP API as a caller sees it: one ``request`` that retries safely, and the routes the CLI uses most."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from infra import devauth
from infra.cli.errors import ApiRefused, ConnectionFailed, UsageError

DEFAULT_URL = "http://127.0.0.1:3000"
ADMIN_SUB_DEFAULT = "ops"
ADMIN_GROUP = "admin"
HTTP_TIMEOUT_S = 30
ATTEMPTS_MAX = 3
RETRY_DELAY_S = 0.5
HISTORY_PAGE_MAX = 100


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any

    @property
    def replayed(self) -> bool:
        return self.headers.get("idempotent-replayed", "").lower() == "true"


def new_key() -> str:
    return f"cli-{uuid.uuid4()}"


def path_part(value: str) -> str:
    """One path segment, percent-encoded (a user id may hold ``:`` or ``@``)."""
    return quote(value, safe="")


@dataclass
class ApiClient:
    """Signs development tokens (for ``user``, or ``admin_sub`` on admin routes) unless given a real one."""

    base_url: str = DEFAULT_URL
    token: str | None = None
    admin_sub: str = ADMIN_SUB_DEFAULT
    timeout_s: float = HTTP_TIMEOUT_S
    _tokens: dict[tuple[str, bool], str] = field(default_factory=dict, repr=False)

    def bearer(self, sub: str | None, *, admin: bool = False) -> str:
        if self.token:
            return self.token
        if not sub:
            raise UsageError("name a user to sign a development token for (or pass --token)")
        key = (sub, admin)
        if key not in self._tokens:
            try:
                self._tokens[key] = devauth.mint(sub, [ADMIN_GROUP] if admin else [])
            except ValueError as error:
                raise UsageError(f"cannot sign a development token for {sub!r}: {error}") from None
        return self._tokens[key]

    def request(
        self,
        method: str,
        path: str,
        *,
        user: str | None = None,
        admin: bool = False,
        query: dict[str, Any] | None = None,
        body: Any = None,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
        authenticate: bool = True,
    ) -> Reply:
        """One call; retried on connection failures with the very same headers and body.

        A POST that moves tokens carries an Idempotency-Key, so a retry after a lost answer
        moves nothing twice. An error status raises ``ApiRefused``; no answer at all,
        ``ConnectionFailed``.
        """
        if not self.base_url.startswith(("http://", "https://")):
            raise UsageError(f"--url must start with http:// or https://, not {self.base_url!r}")
        url = self.base_url.rstrip("/") + path
        encoded = urlencode({k: v for k, v in (query or {}).items() if v is not None})
        if encoded:
            url += "?" + encoded
        all_headers = {"accept": "application/json", **(headers or {})}
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            all_headers.setdefault("content-type", "application/json")
        if authenticate:
            all_headers["authorization"] = "Bearer " + self.bearer(user if not admin else self.admin_sub, admin=admin)
        last_error: Exception | None = None
        for attempt in range(ATTEMPTS_MAX):
            request = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                    return self._reply(response.status, dict(response.headers.items()), response.read())
            except urllib.error.HTTPError as error:
                reply = self._reply(error.code, dict(error.headers.items()), error.read())
                raise ApiRefused(reply.status, reply.body) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
                last_error = error
                if attempt + 1 < ATTEMPTS_MAX:
                    time.sleep(RETRY_DELAY_S * (attempt + 1))
        reason = getattr(last_error, "reason", last_error)
        hint = " (is `make run` running? it prints the URL to export as TOKENLEDGER_URL)"
        raise ConnectionFailed(f"cannot reach {self.base_url}: {reason}{hint if '127.0.0.1' in url else ''}")

    @staticmethod
    def _reply(status: int, headers: dict[str, str], payload: bytes) -> Reply:
        lowered = {k.lower(): v for k, v in headers.items()}
        text = payload.decode("utf-8", "replace")
        body: Any = text
        if text and "json" in lowered.get("content-type", ""):
            try:
                body = json.loads(text)
            except ValueError:
                body = text
        return Reply(status, lowered, body if text else None)

    # ------------------------------------------------------------ routes used by more than one caller
    def packages(self, user: str | None) -> list[dict[str, Any]]:
        packages: list[dict[str, Any]] = self.request("GET", "/v1/packages", user=user).body["packages"]
        return packages

    def balance(self, user: str | None, *, required: int | None = None) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", "/v1/balance", user=user, query={"required": required}).body
        return body

    def history(
        self,
        user: str | None,
        *,
        limit: int,
        entry_type: str | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest first, following `next_cursor` until `limit` entries or the end."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while len(items) < limit:
            query = {"limit": min(HISTORY_PAGE_MAX, limit - len(items)), "cursor": cursor, "type": entry_type}
            page = self.request("GET", "/v1/transactions", user=user, query=query).body
            items.extend(page["items"])
            if on_page:
                on_page(len(page["items"]))
            cursor = page.get("next_cursor")
            if not cursor:
                break
        return items

    def commit(self, user: str | None, prediction_id: str, amount: int, *, key: str | None = None) -> Reply:
        return self.request(
            "POST",
            "/v1/commitments",
            user=user,
            body={"prediction_id": prediction_id, "amount": amount},
            headers={"idempotency-key": key or new_key()},
        )

    def admin_entry(
        self,
        user: str,
        entry_type: str,
        amount: int,
        *,
        reason: str,
        related_id: str | None = None,
        key: str | None = None,
    ) -> Reply:
        body: dict[str, Any] = {"type": entry_type, "amount": amount, "reason": reason}
        if related_id:
            body["related_id"] = related_id
        return self.request(
            "POST",
            f"/v1/admin/accounts/{path_part(user)}/entries",
            admin=True,
            body=body,
            headers={"idempotency-key": key or new_key()},
        )

    def audit(self, user: str) -> dict[str, Any]:
        body: dict[str, Any] = self.request("GET", f"/v1/admin/accounts/{path_part(user)}/audit", admin=True).body
        return body

    def post_stripe_event(self, event: dict[str, Any], secret: str) -> Reply:
        from infra.stripe_events import WEBHOOK_PATH, signed_delivery

        payload, headers = signed_delivery(event, secret)
        return self.request("POST", WEBHOOK_PATH, raw=payload.encode(), headers=headers, authenticate=False)
