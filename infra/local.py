"""``make run``: the whole service on this machine, no AWS account and no Docker.

    python -m infra.local --port 3000 --engine moto|dynamodb-local|endpoint [--seed] [--data-dir DIR]

An embedded moto (DynamoDB, S3, Secrets Manager) runs in this process with every table,
bucket and secret that ``template.yaml`` declares (``infra.world.local_world``, the same world
as the tests', bench's and chaos's). HTTP requests are routed by the
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
``infra.local_events``, docs/events.md). The server is ``infra.local_http``; the demo data
(``--seed``) and the first screen are ``infra.local_demo``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from infra import checkout_local, console, devauth, local_events, swagger_ui
from infra.cli import CliError
from infra.dynamodb_local import DynamoDBLocalUnavailable
from infra.local_demo import first_screen, seed_demo
from infra.local_http import LocalServer
from infra.npm import NpmFetchFailed, install_pinned
from infra.template import LOCAL_REGION, REPO_ROOT, Stack
from infra.world import (
    DYNAMODB_ENDPOINT_ENV_VAR,
    ENGINE_DYNAMODB_LOCAL,
    ENGINE_ENDPOINT,
    ENGINE_MOTO,
    ENGINES,
    local_environment,
    local_world,
    secret_named_by,
)

HOST = "127.0.0.1"
DEFAULT_PORT = 3000
STRIPE_SECRET_ENV = "STRIPE_WEBHOOK_SECRET_NAME"
STRIPE_API_KEY_SECRET_ENV = "STRIPE_API_KEY_SECRET_NAME"
STRIPE_SIGNING_SECRET_ENV_VAR = "STRIPE_WEBHOOK_SECRET"  # e.g. the whsec_ that `stripe listen` prints


class LocalStack:
    """The template's world on a local engine, and its HTTP API served by the real handlers."""

    def __init__(
        self,
        *,
        engine: str = ENGINE_MOTO,
        data_dir: Path | None = None,
        stack: Stack | None = None,
        log_level: str = "WARNING",
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
        if data_dir is not None and engine != ENGINE_DYNAMODB_LOCAL:
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
        from infra.api import LocalApi
        from infra.queues import QueuePump

        self._environment()
        world = self._exit.enter_context(
            local_world(
                self.stack,
                self.engine,
                dynamodb_endpoint=self.external_dynamodb,
                data_dir=self.data_dir,
                secrets=self._secret_values(),
            )
        )
        self.dynamodb_endpoint = world.dynamodb_endpoint
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

    def _secret_values(self) -> dict[str, str]:
        """The Stripe signing secret and API key (the real one, else the fake Stripe's) for the template's secrets."""
        values = {}
        webhook_secret = secret_named_by(self.stack, STRIPE_SECRET_ENV)
        if webhook_secret:
            values[webhook_secret] = self.stripe_signing_secret
        api_key_secret = secret_named_by(self.stack, STRIPE_API_KEY_SECRET_ENV)
        if api_key_secret:
            values[api_key_secret] = self.stripe_api_key or self.fake_stripe_key
        return values

    def _environment(self) -> None:
        """What Lambda would set (the template's variables), with Powertools as quiet as asked."""
        quiet = self.log_level not in ("DEBUG", "INFO")
        environment = local_environment(
            self.stack,
            # The functions' own logs and metrics (JSON lines) only when asked for: `--log-level INFO`.
            POWERTOOLS_LOG_LEVEL=self.log_level,
            POWERTOOLS_METRICS_DISABLED="true" if quiet else "false",
        )
        if self.engine == ENGINE_ENDPOINT:
            if not os.environ.get("AWS_ENDPOINT_URL"):
                raise ValueError(
                    "--engine endpoint needs AWS_ENDPOINT_URL naming a local endpoint for DynamoDB, S3 and "
                    "Secrets Manager (LocalStack, a moto server); for AWS itself deploy with `sam deploy` "
                    "and point `tokenledger --url` at the API (docs/local.md)"
                )
            # Credentials and region the endpoint expects, if the shell gives them.
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_DEFAULT_REGION"):
                environment.pop(name)
            os.environ.setdefault("AWS_ACCESS_KEY_ID", "local")
            os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "local")
            os.environ.setdefault("AWS_DEFAULT_REGION", LOCAL_REGION)
            environment["AWS_REGION"] = os.environ.get("AWS_REGION") or os.environ["AWS_DEFAULT_REGION"]
        elif self.engine == ENGINE_DYNAMODB_LOCAL:
            # A DynamoDB Local the caller runs itself, else ours (started by the world).
            self.external_dynamodb = os.environ.get(DYNAMODB_ENDPOINT_ENV_VAR) or None
            if self.external_dynamodb and self.data_dir is not None:
                raise ValueError("--data-dir starts our own DynamoDB Local; unset AWS_ENDPOINT_URL_DYNAMODB to use it")
        os.environ.update(environment)

    def _docs(self) -> None:
        from infra import openapi

        try:
            self.openapi = openapi.build_document(self.stack)
        except Exception as error:  # the API still serves; /openapi.json explains
            self.openapi_error = f"{type(error).__name__}: {error}"
        try:
            self.swagger_dir = install_pinned(swagger_ui.SWAGGER_UI)
        except NpmFetchFailed as error:
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


@contextlib.contextmanager
def serving(
    port: int = 0, *, engine: str = ENGINE_MOTO, data_dir: Path | None = None, quiet: bool = True
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
    parser.add_argument("--engine", choices=ENGINES, default=ENGINE_MOTO)
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
