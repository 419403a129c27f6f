"""``make run``: the whole service on this machine, no AWS account and no Docker.

    python -m infra.local --port 3000 --engine moto|dynamodb-local|endpoint [--seed] [--data-dir DIR]

An embedded moto (DynamoDB, S3, Secrets Manager) runs in this process with every table,
bucket and secret that ``template.yaml`` declares. HTTP requests are routed by the
template's ``HttpApi`` events to the real handlers (``infra.api.LocalApi``) as API Gateway
payload 2.0 events, one handler module copy per concurrent request, like Lambda's execution
environments. moto is made atomic per request (``infra.world.make_moto_atomic``).

Routes behind the template's JWT authorizer need ``Authorization: Bearer <jwt>``: tokens
signed with the local development key (``infra.devauth``; ``tokenledger token <user>``).
Their claims reach the handlers as API Gateway passes them; a missing or bad token is 401.

Engines: ``moto`` (default, in memory); ``dynamodb-local`` puts DynamoDB on AWS's DynamoDB
Local, started here (``--data-dir`` keeps its data between runs) or the one that
``AWS_ENDPOINT_URL_DYNAMODB`` names, while S3 and Secrets Manager stay on moto; ``endpoint``
uses no moto at all and talks to whatever ``AWS_ENDPOINT_URL`` names (LocalStack, a moto
server), creating the template's resources that are missing.

Also served: ``/console`` (the web console, ``infra.console``; docs/console.md),
``/docs`` (Swagger UI, from the pinned npm package swagger-ui-dist),
``/openapi.json`` (generated from the handlers), ``/healthz``, and ``/_local/events`` (the
event bus as the entries stream's publisher fills it, for ``tokenledger events --follow``;
``infra.local_events``, docs/events.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from infra import checkout_local, console, devauth, local_events, swagger_ui
from infra.cli import CliError
from infra.dynamodb_local import DynamoDBLocalUnavailable
from infra.template import LOCAL_REGION, REPO_ROOT, Route, Stack

HOST = "127.0.0.1"
DEFAULT_PORT = 3000
ENGINES = ("moto", "dynamodb-local", "endpoint")
BODY_BYTES_MAX = 10 * 1024 * 1024  # API Gateway's payload limit
PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tokenledger.dev/problems/"
STRIPE_SECRET_ENV = "STRIPE_WEBHOOK_SECRET_NAME"
STRIPE_API_KEY_SECRET_ENV = "STRIPE_API_KEY_SECRET_NAME"
STRIPE_SIGNING_SECRET_ENV_VAR = "STRIPE_WEBHOOK_SECRET"  # e.g. the whsec_ that `stripe listen` prints
DOCS_ASSETS_PREFIX = "/docs/assets"
ENDPOINT_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_DYNAMODB",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
)


# ---------------------------------------------------------------- the world
def stripe_secret_logical_id(stack: Stack, env_name: str = STRIPE_SECRET_ENV) -> str | None:
    """The template secret a function names in `env_name` (`!Ref <Secret>`), if any."""
    globals_env = stack.template.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    candidates = [globals_env.get(env_name)]
    for resource in stack.of_type("AWS::Serverless::Function").values():
        variables = resource.get("Properties", {}).get("Environment", {}).get("Variables", {})
        candidates.append(variables.get(env_name))
    for value in candidates:
        ref = value.get("Ref") if isinstance(value, dict) else None
        if ref and stack.resources.get(ref, {}).get("Type") == "AWS::SecretsManager::Secret":
            return str(ref)
    return None


class LocalStack:
    """The template's world on a local engine, and its HTTP API served by the real handlers."""

    def __init__(
        self,
        *,
        engine: str = "moto",
        data_dir: Path | None = None,
        stack: Stack | None = None,
        log_level: str = "WARNING",
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        if data_dir is not None and engine != "dynamodb-local":
            raise ValueError("--data-dir keeps DynamoDB Local's data; use it with --engine dynamodb-local")
        self.engine = engine
        self.data_dir = data_dir
        self.log_level = log_level.upper()
        self.stack = stack or Stack()
        self.stripe_signing_secret = (
            os.environ.get(STRIPE_SIGNING_SECRET_ENV_VAR, "").strip() or devauth.stripe_webhook_secret()
        )
        # Checkout: the real Stripe with STRIPE_API_KEY=sk_test_..., else the fake one served here.
        self.stripe_api_key = checkout_local.real_api_key()
        self.stripe_api_base = os.environ.get("STRIPE_API_BASE", "").strip()
        self.fake_stripe_key = checkout_local.local_api_key()
        self.checkout: checkout_local.LocalCheckout | None = None
        devauth.signing_key()  # created now, before any `tokenledger token` races to make one
        self._exit = contextlib.ExitStack()
        self.api: Any = None
        self.queues: Any = None
        self.dynamodb_endpoint: str | None = None
        self.openapi: dict[str, Any] | None = None
        self.openapi_error: str | None = None
        self.swagger_dir: Path | None = None
        self.swagger_error: str | None = None
        self.console: console.ConsoleSite | None = None
        self.events: local_events.LocalEvents | None = None
        self.ready = threading.Event()
        self.external_dynamodb: str | None = None

    def start(self) -> LocalStack:
        import boto3

        from infra.api import LocalApi
        from infra.queues import QueuePump, create_queues
        from infra.world import create_buckets, create_event_buses, create_secrets, create_tables, make_moto_atomic

        self._environment()
        if self.engine in ("moto", "dynamodb-local"):
            from moto import mock_aws

            make_moto_atomic()
            self._exit.enter_context(mock_aws())
        if self.engine == "dynamodb-local" and self.external_dynamodb is None:
            from infra.dynamodb_local import DynamoDBLocal

            ddb = self._exit.enter_context(DynamoDBLocal(data_dir=self.data_dir))
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint_url
        self.dynamodb_endpoint = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL")
        create_tables(self.stack, boto3.client("dynamodb", region_name=LOCAL_REGION))
        create_buckets(self.stack, boto3.client("s3", region_name=LOCAL_REGION))
        secret_values = {}
        stripe_secret = stripe_secret_logical_id(self.stack)
        if stripe_secret:
            secret_values[stripe_secret] = self.stripe_signing_secret
        api_key_secret = stripe_secret_logical_id(self.stack, STRIPE_API_KEY_SECRET_ENV)
        if api_key_secret:
            secret_values[api_key_secret] = self.stripe_api_key or self.fake_stripe_key
        create_secrets(self.stack, boto3.client("secretsmanager", region_name=LOCAL_REGION), secret_values)
        create_event_buses(self.stack, boto3.client("events", region_name=LOCAL_REGION))
        create_queues(self.stack, boto3.client("sqs", region_name=LOCAL_REGION))
        self.api = LocalApi(self.stack)
        # The entries stream feeds the events publisher; stopped before the engines above go.
        self.events = local_events.LocalEvents(self.stack, self.engine).start()
        self._exit.callback(self.events.stop)
        # The template's SQS event sources (the settlement worker), played from the API's pool.
        self.queues = QueuePump(self.stack, self.api.pool).start()
        self._exit.callback(self.queues.stop)
        self._docs()
        self.console = console.ConsoleSite(self)
        return self

    def _environment(self) -> None:
        """What Lambda would set, plus quiet Powertools; names come from the template."""
        if self.engine == "endpoint":
            if not os.environ.get("AWS_ENDPOINT_URL"):
                raise ValueError(
                    "--engine endpoint needs AWS_ENDPOINT_URL naming a local endpoint for DynamoDB, S3 and "
                    "Secrets Manager (LocalStack, a moto server); for AWS itself deploy with `sam deploy` "
                    "and point `tokenledger --url` at the API (docs/local.md)"
                )
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
        else:
            # moto must see every call: an endpoint variable left in the shell would bypass it,
            # except a DynamoDB Local the caller runs itself (--engine dynamodb-local).
            self.external_dynamodb = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") if self.engine != "moto" else None
            if self.external_dynamodb and self.data_dir is not None:
                raise ValueError("--data-dir starts our own DynamoDB Local; unset AWS_ENDPOINT_URL_DYNAMODB to use it")
            for name in ENDPOINT_VARS:
                os.environ.pop(name, None)
            if self.external_dynamodb:
                os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = self.external_dynamodb
        os.environ.setdefault("AWS_DEFAULT_REGION", LOCAL_REGION)
        os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
        os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")
        os.environ.update(self.stack.environment())
        # The functions' own logs and metrics (JSON lines) only when asked for: `--log-level INFO`.
        os.environ["POWERTOOLS_LOG_LEVEL"] = self.log_level
        os.environ["POWERTOOLS_METRICS_DISABLED"] = "false" if self.log_level in ("DEBUG", "INFO") else "true"

    def _docs(self) -> None:
        from infra import openapi

        try:
            self.openapi = openapi.build_document(self.stack)
        except Exception as error:  # the API still serves; /openapi.json explains
            self.openapi_error = f"{type(error).__name__}: {error}"
        try:
            self.swagger_dir = swagger_ui.ensure_installed()
        except swagger_ui.SwaggerUIUnavailable as error:
            self.swagger_error = str(error)

    def bind(self, url: str, *, log: Any = print) -> None:
        """Served at `url` now: checkout redirects, defaults and (without a real key) Stripe itself point here."""
        split = urlsplit(url)
        port = split.port
        host = "127.0.0.1" if split.hostname in ("0.0.0.0", "::") else split.hostname  # noqa: S104 - a check
        base = f"http://{host}:{port}"
        origins = [o for o in os.environ.get("CHECKOUT_ALLOWED_ORIGINS", "").split(",") if o.strip()]
        origins += [f"http://127.0.0.1:{port}", f"http://localhost:{port}"]
        os.environ["CHECKOUT_ALLOWED_ORIGINS"] = ",".join(dict.fromkeys(origins))
        os.environ["CHECKOUT_SUCCESS_URL"] = f"{base}/checkout/complete?session_id={{CHECKOUT_SESSION_ID}}"
        os.environ["CHECKOUT_CANCEL_URL"] = f"{base}/checkout/cancelled"
        if self.stripe_api_key is None:
            os.environ["STRIPE_API_BASE"] = f"{base}{checkout_local.STRIPE_PREFIX}"
        else:
            os.environ["STRIPE_API_BASE"] = self.stripe_api_base
        self.checkout = checkout_local.LocalCheckout(
            api=self.api,
            signing_secret=self.stripe_signing_secret,
            api_key=self.fake_stripe_key,
            base_url=base,
            log=log,
        )

    def stop(self) -> None:
        self._exit.close()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------- HTTP
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
        if method == "GET" and path == local_events.EVENTS_PATH and local.events is not None:
            status, body = local.events.respond(dict(parse_qsl(query_string)), self.headers.get("authorization"))
            if status != 200:
                return self._send_json(status, problem_body(status, body["code"], body["detail"]))
            return self._send_json(status, body, "application/json")
        if method == "GET":
            if path in ("/", "/docs/"):
                return self._send(302, b"", "text/plain", {"location": "/docs"})
            if path == "/docs":
                return self._docs_page()
            if path.startswith(DOCS_ASSETS_PREFIX + "/"):
                return self._docs_asset(path.removeprefix(DOCS_ASSETS_PREFIX + "/"))
            if path == "/openapi.json":
                if local.openapi is None:
                    return self._send_json(500, problem_body(500, "openapi_unavailable", str(local.openapi_error)))
                return self._send_json(200, local.openapi)
            if path == "/healthz":  # 503 until demo data, if asked for, is written
                ready = local.ready.is_set()
                health = {"status": "ok" if ready else "starting", "engine": local.engine}
                return self._send_json(200 if ready else 503, health, "application/json")
        return self._api(method, path, query_string, raw)

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


# ---------------------------------------------------------------- demo data
def seed_demo(url: str, local: LocalStack, *, stream: Any = None) -> list[dict[str, Any]]:
    """A few users with purchases, commitments and a payout, written through the API itself."""
    from infra.cli import ApiClient, ApiRefused, Progress, checkout_completed_event, local_catalog

    client = ApiClient(url)
    packages = {p["package_id"]: p for p in local_catalog()}
    has_stripe = local.api.match("POST", "/v1/webhooks/stripe") is not None
    steps: list[tuple[str, str, Any]] = [
        ("alice", "purchase", "standard"),
        ("alice", "commit", ("p-worldcup-final", 120)),
        ("alice", "commit", ("p-moon-base-2030", 30)),
        ("alice", "payout", ("p-worldcup-final", 240)),
        ("bob", "purchase", "starter"),
        ("bob", "commit", ("p-worldcup-final", 60)),
        ("bob", "commit", ("p-rain-tomorrow", 15)),
        ("carol", "grant", 50),
    ]
    with Progress("seeding demo data", len(steps), stream=stream) as progress:
        for number, (user, action, arg) in enumerate(steps):
            # Fixed keys and payment ids: seeding kept data again (--data-dir) moves nothing twice.
            key = f"demo-seed-{number}"
            if action == "purchase":
                credited = False
                if has_stripe:
                    event = checkout_completed_event(user, packages[arg], payment_id=f"demo_{user}_{arg}")
                    with contextlib.suppress(ApiRefused):
                        client.post_stripe_event(event, local.stripe_signing_secret)
                        credited = True
                if not credited:  # no Stripe function: an admin grant stands in for the purchase
                    reason = f"demo: stands in for a Stripe purchase of {arg}"
                    client.admin_entry(user, "grant", packages[arg]["tokens"], reason=reason, key=key)
            elif action == "commit":
                prediction, amount = arg
                client.commit(user, prediction, amount, key=key)
            elif action == "payout":
                prediction, amount = arg
                reason = "demo: prediction won"
                client.admin_entry(user, "payout", amount, reason=reason, related_id=prediction, key=key)
            else:
                client.admin_entry(user, "grant", arg, reason="demo: welcome grant", key=key)
            progress.advance()
    return [client.balance(user) for user in ("alice", "bob", "carol")]


# ---------------------------------------------------------------- the first screen
def _cli_command() -> str:
    """How to call the console script from here: `.venv/bin/tokenledger` if that is where it is."""
    script = Path(sys.executable).parent / "tokenledger"
    if not script.exists():
        return "tokenledger"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def first_screen(url: str, local: LocalStack, seeded: list[dict[str, Any]] | None) -> str:
    cli = _cli_command()
    engine = {
        "moto": "embedded moto (DynamoDB, S3, Secrets Manager), in memory",
        "dynamodb-local": f"DynamoDB Local at {local.dynamodb_endpoint}"
        + (
            " (yours, from AWS_ENDPOINT_URL_DYNAMODB)"
            if local.external_dynamodb
            else (f", data in {local.data_dir}" if local.data_dir else ", in memory")
        )
        + "; S3 and Secrets Manager on embedded moto",
        "endpoint": f"{local.dynamodb_endpoint} (AWS_ENDPOINT_URL), no moto",
    }[local.engine]
    routes = local.stack.routes()
    lines = [
        "",
        "tokenledger local stack: the real Lambda handlers behind a local API Gateway",
        "",
        f"  API      {url}",
        f"  Docs     {url}/docs   (OpenAPI document: {url}/openapi.json)",
        f"  Console  {url}/console   (pick a user; `ops` is in the admin group)",
        f"  Engine   {engine}",
        f"  Routes   {len(routes)} from template.yaml, each behind a bearer token unless marked:",
    ]
    lines += [f"             {r.method:<5} {r.path}{'' if r.authorized else '   (no JWT)'}" for r in routes]
    lines.append(
        "  Checkout "
        + (
            f"the real Stripe (test mode, STRIPE_API_KEY); events: stripe listen --forward-to {url}/v1/webhooks/stripe"
            if local.stripe_api_key
            else f"local: POST /v1/checkout-sessions answers a {url}/checkout/cs_... page (docs/stripe.md)"
        )
    )
    if local.swagger_error:
        lines.append(f"  Note     /docs without Swagger UI: {local.swagger_error}")
    if local.console is not None and local.console.vendor_error:
        lines.append(f"  Note     /console without charts: {local.console.vendor_error}")
    if local.openapi_error:
        lines.append(f"  Note     /openapi.json unavailable: {local.openapi_error}")
    lines += [
        "",
        "Try it from another terminal in this folder:",
        f"  export TOKENLEDGER_URL={url}   # the CLI's API (its default is port {DEFAULT_PORT})",
        f"  TOKEN=$({cli} token alice)",
        f'  curl -s -H "Authorization: Bearer $TOKEN" {url}/v1/balance',
        f"  {cli} stripe-purchase alice --package starter",
        f"  {cli} history alice",
    ]
    if seeded:
        summary = ", ".join(f"{b['user_id']} {b['balance']}" for b in seeded)
        lines += ["", f"Demo data: {summary} tokens (admin: `{cli} token ops --admin`)"]
    lines += [
        "",
        "Walk-through: docs/local.md.  Ctrl-C stops"
        + (" (moto keeps data in memory: it goes too)." if local.engine == "moto" else "."),
        "",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def serving(
    port: int = 0, *, engine: str = "moto", data_dir: Path | None = None, quiet: bool = True
) -> Iterator[tuple[LocalServer, LocalStack]]:
    """The stack served on `port` (0: a free one) in a background thread, for scripts."""
    with LocalStack(engine=engine, data_dir=data_dir) as local:
        server = LocalServer((HOST, port), local, quiet=quiet)
        thread = threading.Thread(target=server.serve_forever, name="tokenledger-local", daemon=True)
        thread.start()
        local.ready.set()
        try:
            yield server, local
        finally:
            server.shutdown()
            server.server_close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}; 0 picks a free one")
    parser.add_argument("--host", default=HOST, help="interface to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--engine", choices=ENGINES, default="moto")
    parser.add_argument("--seed", action="store_true", help="create demo users with purchases and history")
    parser.add_argument("--data-dir", type=Path, help="keep DynamoDB Local's data here (with --engine dynamodb-local)")
    parser.add_argument("--quiet", action="store_true", help="no line per request")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="the functions' Powertools log level (INFO also prints their metrics); default WARNING",
    )
    args = parser.parse_args(argv)

    os.chdir(REPO_ROOT)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    print(f"starting the local stack ({args.engine}) ...", flush=True)
    try:
        with LocalStack(engine=args.engine, data_dir=args.data_dir, log_level=args.log_level) as local:
            try:
                server = LocalServer((args.host, args.port), local, quiet=args.quiet)
            except OSError as error:
                print(f"error: cannot listen on {args.host}:{args.port}: {error}", file=sys.stderr)
                print("pick another port: make run PORT=3001", file=sys.stderr)
                return 2
            thread = threading.Thread(target=server.serve_forever, name="http", daemon=True)
            thread.start()
            seeded = None
            if args.seed:
                try:
                    seeded = seed_demo(server.url, local)
                except CliError as error:  # the stack still serves; say what the seed could not do
                    print(f"warning: demo data incomplete: {error}", file=sys.stderr)
            print(first_screen(server.url, local, seeded), flush=True)
            local.ready.set()
            try:
                thread.join()
            except KeyboardInterrupt:
                print("\nstopping ...", flush=True)
            finally:
                server.shutdown()
                server.server_close()
    except (ValueError, DynamoDBLocalUnavailable) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
