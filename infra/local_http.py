"""The local stack's HTTP server: API Gateway in front of the real handlers, and the local-only pages.

Requests to the template's routes go to ``infra.api.LocalApi`` (the JWT authorizer played with
the development key, ``infra.devauth``); ``/console``, the checkout pages, ``/docs``,
``/openapi.json``, ``/healthz`` and ``/_local/events`` are served here (see ``infra.local``).
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from infra import checkout_local, console, devauth, local_events, swagger_ui
from infra.template import Route

if TYPE_CHECKING:
    from infra.local import LocalStack

BODY_BYTES_MAX = 10 * 1024 * 1024  # API Gateway's payload limit
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tokenledger.dev/problems/"
DOCS_ASSETS_PREFIX = "/docs/assets"


def problem_body(status: int, code: str, detail: str) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE_BASE + code,
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }


class LocalServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], local: LocalStack, *, quiet: bool = False) -> None:
        super().__init__(address, _Handler)
        self.local = local
        self.quiet = quiet
        self.log_lock = threading.Lock()
        local.bind(self.url, log=lambda line: None if quiet else print(line, flush=True))

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


class _Handler(BaseHTTPRequestHandler):
    server: LocalServer
    protocol_version = "HTTP/1.1"
    server_version = "tokenledger-local"

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_OPTIONS(self) -> None:
        self._handle()

    def _handle(self) -> None:
        started = time.perf_counter()
        self._who = ""
        self._logged = not self.server.quiet and self.server.local.ready.is_set()  # demo data shows a bar
        url = urlsplit(self.path)
        path = url.path
        length = int(self.headers.get("content-length") or 0)
        if length > BODY_BYTES_MAX:
            self._send_json(
                413, problem_body(413, "payload_too_large", f"bodies are limited to {BODY_BYTES_MAX} bytes")
            )
            self.close_connection = True
            return
        raw = self.rfile.read(length) if length else b""
        try:
            status = self._dispatch(self.command, path, url.query, raw)
        except Exception:  # a crash in a handler is a 500, as Lambda's would be; logged, never hidden
            traceback.print_exc()
            status = 500
            self._send_json(500, problem_body(500, "internal_error", "the local stack failed; see its console"))
        self._log(status, started)

    def _dispatch(self, method: str, path: str, query_string: str, raw: bytes) -> int:
        local = self.server.local
        if local.console is not None and console.ConsoleSite.handles(path):
            return self._send(*local.console.respond(method, path, raw, str(self.client_address[0])))
        if local.checkout is not None and path.startswith(checkout_local.PATH_PREFIXES):
            page = local.checkout.handle(method, path, query_string, dict(self.headers.items()), raw)
            return self._send(page.status, page.body, page.content_type, page.headers)
        if method == "GET":
            status = self._local_page(path, query_string)
            if status is not None:
                return status
        return self._api(method, path, query_string, raw)

    def _local_page(self, path: str, query_string: str) -> int | None:
        """A GET of what only the local stack serves (docs, the document, health, the bus); None if not one."""
        if path in ("/", "/docs/"):
            return self._send(302, b"", "text/plain", {"location": "/docs"})
        if path.startswith(DOCS_ASSETS_PREFIX + "/"):
            return self._docs_asset(path.removeprefix(DOCS_ASSETS_PREFIX + "/"))
        if path == local_events.EVENTS_PATH and self.server.local.events is not None:
            return self._events(self.server.local.events, query_string)
        page = {"/docs": self._docs_page, "/openapi.json": self._openapi, "/healthz": self._health}.get(path)
        return None if page is None else page()

    def _events(self, events: local_events.LocalEvents, query_string: str) -> int:
        status, body = events.respond(dict(parse_qsl(query_string)), self.headers.get("authorization"))
        if status != 200:
            return self._send_json(status, problem_body(status, body["code"], body["detail"]))
        return self._send_json(status, body, "application/json")

    def _openapi(self) -> int:
        local = self.server.local
        if local.openapi is None:
            return self._send_json(500, problem_body(500, "openapi_unavailable", str(local.openapi_error)))
        return self._send_json(200, local.openapi)

    def _health(self) -> int:
        """200 once serving, 503 until demo data, if asked for, is written."""
        local = self.server.local
        ready = local.ready.is_set()
        health = {"status": "ok" if ready else "starting", "engine": local.engine}
        return self._send_json(200 if ready else 503, health, "application/json")

    def _api(self, method: str, path: str, query_string: str, raw: bytes) -> int:
        api = self.server.local.api
        headers: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]},{value}" if key in headers else value
        query: dict[str, str] = {}
        for name, value in parse_qsl(query_string, keep_blank_values=True):
            query[name] = f"{query[name]},{value}" if name in query else value
        found: tuple[Route, dict[str, str]] | None = api.match(method, path)
        claims = None
        if found is not None and found[0].authorized:
            try:
                verified = devauth.verify(devauth.bearer_token(headers.get("authorization")))
            except devauth.InvalidToken as refused:
                return self._send_json(
                    401,
                    problem_body(401, "unauthorized", str(refused)),
                    PROBLEM_JSON,
                    {"www-authenticate": 'Bearer realm="tokenledger-local", error="invalid_token"'},
                )
            claims = devauth.gateway_claims(verified)
            self._who = claims["sub"]
        body: str | bytes | None = None
        if raw:
            try:
                body = raw.decode("utf-8")
            except UnicodeDecodeError:
                body = raw
        response = api.request(method, path, claims=claims, headers=headers, body=body, query=query or None)
        extra = {k: v for k, v in response.headers.items() if k not in ("content-length", "connection")}
        content_type = extra.pop("content-type", "application/json")
        return self._send(response.status, response.body.encode(), content_type, extra)

    def _docs_page(self) -> int:
        local = self.server.local
        if local.swagger_dir is None:
            routes = "".join(f"<li><code>{r.route_key}</code></li>" for r in local.stack.routes())
            html = (
                "<!doctype html><title>tokenledger API</title><h1>tokenledger API</h1>"
                f"<p>Swagger UI is not installed here ({local.swagger_error}). "
                "Run <code>.venv/bin/python -m infra.swagger_ui</code> and restart. "
                'The document is at <a href="/openapi.json">/openapi.json</a>.</p>'
                f"<ul>{routes}</ul>"
            )
            return self._send(200, html.encode(), "text/html; charset=utf-8")
        page = swagger_ui.page("tokenledger API (local)", "/openapi.json", DOCS_ASSETS_PREFIX)
        return self._send(200, page.encode(), "text/html; charset=utf-8")

    def _docs_asset(self, name: str) -> int:
        local = self.server.local
        content_type = swagger_ui.ASSETS.get(name)
        if content_type is None or local.swagger_dir is None:
            return self._send_json(404, problem_body(404, "not_found", "no such file"))
        data = (local.swagger_dir / name).read_bytes()
        return self._send(200, data, content_type, {"cache-control": "max-age=86400"})

    def _send_json(
        self, status: int, body: Any, content_type: str | None = None, headers: dict[str, str] | None = None
    ) -> int:
        is_problem = content_type is None and status >= 400
        data = json.dumps(body).encode()
        return self._send(status, data, content_type or (PROBLEM_JSON if is_problem else "application/json"), headers)

    def _send(self, status: int, data: bytes, content_type: str, headers: dict[str, str] | None = None) -> int:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        return status

    def _log(self, status: int, started: float) -> None:
        if not self._logged:
            return
        elapsed_ms = (time.perf_counter() - started) * 1000
        line = f"{time.strftime('%H:%M:%S')}  {status}  {self.command:<6} {self.path}  {elapsed_ms:.0f} ms"
        if self._who:
            line += f"  ({self._who})"
        with self.server.log_lock:
            print(line, flush=True)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        """Silence the stdlib's own access log; `_log` writes one line per request."""
