"""A fake Stripe API, in memory: the Checkout Session calls tokenledger makes, as Stripe answers them.

Served by the local stack under ``/stripe`` (``STRIPE_API_BASE=<local stack>/stripe``) and by
tests on a port of their own (``serve``). What it does like Stripe:

- ``POST /v1/checkout/sessions`` (form-encoded, as the ``stripe`` package sends it), with the
  secret key as bearer; prices from ``price_data`` or from a known Price id;
- ``Idempotency-Key``: the same key and parameters answer the first session again, other
  parameters are 400 ``idempotency_error``; concurrent requests are served one at a time;
- ``GET /v1/checkout/sessions/{id}``, ``GET /v1/payment_intents/{id}``;
- ``complete(session_id)``: the buyer paid; returns the ``checkout.session.completed`` event
  Stripe would send (``amount_subtotal``, ``currency``, ``payment_intent``, ``metadata``).

Tests can make it fail: ``fail_next(status)`` answers the next create with that status.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

from infra.stripe_events import stripe_event

SESSION_TTL_S = 24 * 3600  # Stripe's default expiry of a Checkout Session
SESSIONS_MAX = 10_000  # a local stack runs for hours, not forever; oldest forgotten first
FORM_BYTES_MAX = 64 * 1024
_SESSION_PATH = re.compile(r"^/v1/checkout/sessions/(cs_[A-Za-z0-9_]+)$")
_PAYMENT_PATH = re.compile(r"^/v1/payment_intents/(pi_[A-Za-z0-9_]+)$")
_INDEX = re.compile(r"^\d{1,3}$")


@dataclass(frozen=True)
class FakePrice:
    amount: int
    currency: str
    name: str


@dataclass
class FakeReply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        return json.dumps(self.body).encode()


def nested_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`a[b][0][c]=v` pairs (Stripe's encoding) as nested dicts; list indexes stay string keys."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        if not parts:
            continue
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return root


def _as_list(value: Any) -> list[Any]:
    """`{"0": a, "1": b}` (an encoded list) as `[a, b]`."""
    if not isinstance(value, dict) or not all(_INDEX.match(k) for k in value):
        return []
    return [value[k] for k in sorted(value, key=int)]


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error(status: int, kind: str, message: str, *, code: str | None = None) -> FakeReply:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
    return FakeReply(status, {"error": error}, {"stripe-should-retry": "false"})


class FakeStripe:
    """Stripe's Checkout Session API for one account, in memory, thread-safe."""

    def __init__(self, *, api_key: str, checkout_url: str, prices: dict[str, FakePrice] | None = None) -> None:
        self.api_key = api_key
        self.checkout_url = checkout_url.rstrip("/")
        self.prices = dict(prices or {})
        self.sessions: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, str] = {}  # payment intent -> session id
        self.create_calls = 0
        self.idempotency_keys: list[str] = []
        self._by_key: dict[str, tuple[str, FakeReply]] = {}
        self._failures: list[int] = []
        self._lock = threading.Lock()

    # ------------------------------------------------------------ test hooks
    def fail_next(self, *statuses: int) -> None:
        """Answer the next creates with these statuses (500: Stripe failing; 401: a bad key)."""
        with self._lock:
            self._failures.extend(statuses)

    def sessions_created(self) -> int:
        with self._lock:
            return len(self.sessions)

    # ------------------------------------------------------------ the API
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> FakeReply:
        lowered = {k.lower(): v for k, v in headers.items()}
        if lowered.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "invalid_request_error", "Invalid API Key provided")
        if method == "POST" and path == "/v1/checkout/sessions":
            return self._create(lowered.get("idempotency-key"), body)
        found = self._retrieve(path) if method == "GET" else None
        if found is not None:
            return found
        return _error(404, "invalid_request_error", f"Unrecognized request URL ({method}: {path})")

    def _retrieve(self, path: str) -> FakeReply | None:
        """GET of a session or a payment intent (or a 404 of one), None for any other path."""
        with self._lock:
            if found := _SESSION_PATH.match(path):
                session = self.sessions.get(found.group(1))
                if session is not None:
                    return FakeReply(200, self._public(session))
                return _error(404, "invalid_request_error", "No such checkout session", code="resource_missing")
            if found := _PAYMENT_PATH.match(path):
                session_id = self.payments.get(found.group(1))
                if session_id is not None:
                    return FakeReply(200, self._payment_intent(found.group(1), self.sessions[session_id]))
                return _error(404, "invalid_request_error", "No such payment_intent", code="resource_missing")
        return None

    def _create(self, idempotency_key: str | None, body: bytes) -> FakeReply:
        if len(body) > FORM_BYTES_MAX:
            return _error(400, "invalid_request_error", "Request too large")
        pairs = sorted(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        fingerprint = hashlib.sha256(json.dumps(pairs).encode()).hexdigest()
        with self._lock:  # one request at a time: a racing request with the same key waits, then replays
            self.create_calls += 1
            if idempotency_key:
                self.idempotency_keys.append(idempotency_key)
                earlier = self._by_key.get(idempotency_key)
                if earlier is not None:
                    if earlier[0] != fingerprint:
                        return _error(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters they were "
                            "first used with.",
                        )
                    stored = earlier[1]
                    return FakeReply(stored.status, stored.body, {**stored.headers, "idempotent-replayed": "true"})
            if self._failures:
                reply = _error(self._failures.pop(0), "api_error", "Something went wrong on Stripe's end (fake).")
            else:
                reply = self._new_session(nested_form(pairs))
            if idempotency_key and reply.status != 401:  # like Stripe: the first answer is kept, a 500 too
                self._by_key[idempotency_key] = (fingerprint, reply)
            return reply

    def _new_session(self, params: dict[str, Any]) -> FakeReply:
        if params.get("mode") != "payment":
            return _error(400, "invalid_request_error", "This fake serves mode=payment only", code="parameter_invalid")
        if not params.get("success_url"):
            return _error(
                400, "invalid_request_error", "Missing required param: success_url.", code="parameter_missing"
            )
        items = _as_list(params.get("line_items"))
        if len(items) != 1 or not isinstance(items[0], dict):
            return _error(400, "invalid_request_error", "Send exactly one line item", code="parameter_invalid")
        item = items[0]
        price = self._price(item)
        if price is None:
            return _error(400, "invalid_request_error", "No such price", code="resource_missing")
        try:
            quantity = int(item.get("quantity", "1"))
        except ValueError:
            return _error(400, "invalid_request_error", "Invalid integer: quantity", code="parameter_invalid")
        metadata = _mapping(params.get("metadata"))
        intent = _mapping(params.get("payment_intent_data"))
        now = int(time.time())
        session_id = f"cs_test_{secrets.token_hex(16)}"
        session = {
            "id": session_id,
            "object": "checkout.session",
            "mode": "payment",
            "status": "open",
            "payment_status": "unpaid",
            "amount_subtotal": price.amount * quantity,
            "amount_total": price.amount * quantity,
            "currency": price.currency,
            "client_reference_id": params.get("client_reference_id"),
            "customer": None,
            "metadata": metadata,
            "payment_intent": None,
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.checkout_url}/checkout/{session_id}",
            "created": now,
            "expires_at": now + SESSION_TTL_S,
            "livemode": False,
            "_product_name": price.name,
            "_quantity": quantity,
            "_payment_intent_metadata": _mapping(intent.get("metadata")),
        }
        if len(self.sessions) >= SESSIONS_MAX:
            self.sessions.pop(next(iter(self.sessions)))
        self.sessions[session_id] = session
        return FakeReply(200, self._public(session))

    def _price(self, item: dict[str, Any]) -> FakePrice | None:
        if "price" in item:
            return self.prices.get(str(item["price"]))
        data = item.get("price_data")
        if not isinstance(data, dict):
            return None
        try:
            amount = int(data.get("unit_amount", ""))
        except ValueError:
            return None
        product = _mapping(data.get("product_data"))
        return FakePrice(amount, str(data.get("currency", "")).lower(), str(product.get("name", "")))

    @staticmethod
    def _public(session: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in session.items() if not k.startswith("_")}

    @staticmethod
    def _payment_intent(payment_id: str, session: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": payment_id,
            "object": "payment_intent",
            "amount": session["amount_total"],
            "amount_received": session["amount_total"],
            "currency": session["currency"],
            "status": "succeeded",
            "latest_charge": session["_charge"],
            "metadata": session["_payment_intent_metadata"],
        }

    # ------------------------------------------------------------ the buyer
    def session(self, session_id: str) -> dict[str, Any] | None:
        """The session with its display fields (`_product_name`), or None."""
        with self._lock:
            found = self.sessions.get(session_id)
            return dict(found) if found is not None else None

    def complete(self, session_id: str) -> dict[str, Any]:
        """The buyer paid: the session completes and this returns Stripe's `checkout.session.completed` event.

        Raises KeyError for an unknown session and ValueError for one that is not open (paid or expired).
        """
        with self._lock:
            session = self.sessions[session_id]
            now = int(time.time())
            if session["status"] != "open" or now >= session["expires_at"]:
                raise ValueError(f"session {session_id} is {session['status']}, not open")
            tag = secrets.token_hex(12)
            session.update(status="complete", payment_status="paid", payment_intent=f"pi_{tag}", _charge=f"ch_{tag}")
            self.payments[session["payment_intent"]] = session_id
            return stripe_event("checkout.session.completed", self._public(session), created=now)

    def expire(self, session_id: str) -> None:
        with self._lock:
            session = self.sessions[session_id]
            if session["status"] == "open":
                session["status"] = "expired"


# ---------------------------------------------------------------- serving it on its own port (tests)
class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(min(length, FORM_BYTES_MAX + 1)) if length else b""
        reply = self.server.fake.handle(self.command, self.path, dict(self.headers.items()), body)
        data = reply.encoded()
        self.send_response(reply.status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", f"req_{secrets.token_hex(8)}")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    do_GET = _serve
    do_POST = _serve

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, fake: FakeStripe) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.fake = fake


@contextlib.contextmanager
def serve(fake: FakeStripe) -> Iterator[str]:
    """`fake` on a free local port; yields its API base URL (for STRIPE_API_BASE)."""
    server = _Server(fake)
    thread = threading.Thread(target=server.serve_forever, name="fake-stripe", daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        yield f"http://{host!s}:{port}"
    finally:
        server.shutdown()
        server.server_close()
