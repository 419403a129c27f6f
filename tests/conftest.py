"""Shared fixtures: the template's world on one of two engines, and the real handlers behind it.

Engines (`--engine` or env `TOKENLEDGER_ENGINE`; the option wins, moto is the default):

- `moto`: everything in moto's in-process `mock_aws`, a fresh account per test.
- `dynamodb-local`: DynamoDB calls go to AWS's DynamoDB Local (one server per pytest worker,
  started on first use), through the standard `AWS_ENDPOINT_URL_DYNAMODB`; S3 and Secrets
  Manager stay on moto. Each test gets freshly created tables, as on moto.

Tests marked `moto_only(reason=...)` are skipped on DynamoDB Local. See docs/engines.md.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from infra.api import ApiResponse, LocalApi, caller_claims
from infra.template import LOCAL_REGION, Stack
from infra.world import (
    DYNAMODB_ENDPOINT_ENV_VAR,
    ENDPOINT_VARS,
    ENGINE_DYNAMODB_LOCAL,
    ENGINE_MOTO,
    local_world,
    use_local_environment,
)

STACK = Stack()

ENGINES = (ENGINE_MOTO, ENGINE_DYNAMODB_LOCAL)
ENGINE_ENV_VAR = "TOKENLEDGER_ENGINE"


def share_botocore_data_loader() -> None:
    """One botocore data loader per data path for the whole test process.

    moto's `mock_aws` resets boto3's default session, so every world (every test) starts a
    new botocore session, and each session's loader parsed every service model, paginator,
    waiter and endpoint file from JSON again (measured: about a third of a test's set-up on
    moto). Sessions now share the loader and its cache of parsed files; botocore already
    shares those parsed files between the clients of one session, which only read them.
    """
    import botocore.loaders
    import botocore.session

    create = botocore.loaders.create_loader
    loaders: dict[str | None, Any] = {}

    def shared_loader(search_path_string: str | None = None) -> Any:
        if search_path_string not in loaders:
            loaders[search_path_string] = create(search_path_string)
        return loaders[search_path_string]

    botocore.session.create_loader = shared_loader  # type: ignore[attr-defined]


share_botocore_data_loader()

# Tests never reach a real endpoint by accident: only the engine fixture sets one.
for _name in ENDPOINT_VARS:
    os.environ.pop(_name, None)

use_local_environment(STACK)


# ---------------------------------------------------------------- engine switch
def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--engine",
        choices=ENGINES,
        default=None,
        help=f"DynamoDB engine for the integration tests (default: ${ENGINE_ENV_VAR} or {ENGINE_MOTO})",
    )


def selected_engine(config: pytest.Config) -> str:
    engine = config.getoption("--engine") or os.environ.get(ENGINE_ENV_VAR) or ENGINE_MOTO
    if engine not in ENGINES:
        raise pytest.UsageError(f"{ENGINE_ENV_VAR}={engine!r}: choose one of {', '.join(ENGINES)}")
    return str(engine)


def pytest_configure(config: pytest.Config) -> None:
    selected_engine(config)  # a typo in the variable fails at once, not as skipped tests


def pytest_report_header(config: pytest.Config) -> str:
    engine = selected_engine(config)
    if engine == ENGINE_MOTO:
        return f"tokenledger engine: {engine}"
    return f"tokenledger engine: {engine} (tests that never reach DynamoDB are deselected: the moto run covers them)"


def moto_only_reason(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("moto_only")
    if marker is None:
        return None
    reason = marker.kwargs.get("reason") or (marker.args[0] if marker.args else "")
    if not reason:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.moto_only needs reason='why only moto can run it'")
    return str(reason)


def uses_engine(item: pytest.Item) -> bool:
    """Whether the test reaches the selected engine (it uses `aws`, `api`, a client... or the endpoint)."""
    return "dynamodb_endpoint" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip `moto_only` tests off moto; on DynamoDB Local, deselect the tests that never reach it.

    Those (unit tests, tests that build their own moto world, the launcher's own tests) run
    the same whatever the engine, so the moto run already covers them.
    """
    engine = selected_engine(config)
    elsewhere: list[pytest.Item] = []
    for item in items:
        reason = moto_only_reason(item)
        if engine == ENGINE_MOTO:
            continue
        if not uses_engine(item):
            elsewhere.append(item)
        elif reason is not None:
            item.add_marker(pytest.mark.skip(reason=f"moto only: {reason}"))
    if elsewhere:
        config.hook.pytest_deselected(items=elsewhere)
        items[:] = [item for item in items if uses_engine(item)]


HANDLER_COPY_PREFIX = "tokenledger_fn_"  # infra.lambdas.load_module's names for handler module copies


@pytest.fixture(autouse=True)
def _forget_handler_copies() -> Iterator[None]:
    """Handler module copies a test loaded leave sys.modules when it ends.

    infra.lambdas registers every copy (one per execution environment) in sys.modules under
    a unique name; without this a worker kept every copy of the run, with its clients and
    services: hundreds by the end, which every full garbage collection then walked. An
    environment still in use (a module-scoped local stack) keeps its module; only the name goes.
    """
    before = set(sys.modules)
    yield
    for name in [n for n in sys.modules if n.startswith(HANDLER_COPY_PREFIX) and n not in before]:
        del sys.modules[name]


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze what lives for the whole run, so full garbage collections stop walking it.

    A worker holds botocore's parsed models, moto's and the handlers' modules and every
    collected test: hundreds of thousands of objects that CPython's full collections walked
    again and again. When the run builds worlds, one is built first (moto's service modules
    imported, the shared botocore loader filled); then `gc.freeze()` moves all of it out of
    the collector's generations. Full collections also wait for 100 young-generation passes
    instead of 10 (`gc.set_threshold`): the tests make many short-lived cycles and few
    long-lived ones. Nothing a test checks depends on when a cycle is freed (the memory
    tests measure with tracemalloc what their own code allocates).
    """
    if any(uses_engine(item) for item in session.items):
        with engine_world(None):
            pass
    gc.collect()
    gc.freeze()
    gc.set_threshold(700, 10, 100)


@pytest.fixture(scope="session")
def engine(pytestconfig: pytest.Config) -> str:
    """`moto` or `dynamodb-local`: the engine DynamoDB calls go to in this run."""
    return selected_engine(pytestconfig)


@pytest.fixture(scope="session")
def dynamodb_endpoint(engine: str) -> Iterator[str | None]:
    """DynamoDB Local's URL, one server per worker process (None on moto)."""
    if engine == ENGINE_MOTO:
        yield None
        return
    from infra.dynamodb_local import DynamoDBLocal, DynamoDBLocalUnavailable

    try:
        server = DynamoDBLocal().start()
    except DynamoDBLocalUnavailable as exc:
        pytest.fail(f"{ENGINE_ENV_VAR}={engine} but DynamoDB Local cannot start: {exc}", pytrace=False)
    try:
        yield server.endpoint_url
    finally:
        server.stop()


_world_clients: dict[tuple[str, str | None], Any] = {}


def world_client(service: str) -> Any:
    """The client a world creates its resources with, made once per service and DynamoDB endpoint.

    Building five boto3 clients was half of a moto world's set-up. One made in an earlier world
    serves the next: moto intercepts every client once it is imported (its stubber sits in
    botocore's built-in handlers, switched on by `mock_aws`), and a new `mock_aws` resets the
    state, not the clients. A DynamoDB client is reused only for the endpoint it was made for.
    """
    import boto3

    key = (service, os.environ.get(DYNAMODB_ENDPOINT_ENV_VAR) if service == "dynamodb" else None)
    if key not in _world_clients:
        _world_clients[key] = boto3.client(service, region_name=LOCAL_REGION)
    return _world_clients[key]


@contextlib.contextmanager
def engine_world(dynamodb_endpoint: str | None) -> Iterator[Any]:
    """A fresh world of the template on the engine (`dynamodb_endpoint` fixture); yields a DynamoDB client.

    For fixtures of a wider scope than `aws` (a module-scoped world, say): depend on
    `dynamodb_endpoint` and enter this. S3 and Secrets Manager are moto's in both cases.
    """
    engine = ENGINE_MOTO if dynamodb_endpoint is None else ENGINE_DYNAMODB_LOCAL
    with local_world(
        STACK, engine, dynamodb_endpoint=dynamodb_endpoint, fresh_tables=True, clients=world_client
    ) as world:
        yield world.dynamodb


@pytest.fixture
def aws(engine: str, dynamodb_endpoint: str | None) -> Iterator[dict[str, Any]]:
    """A fresh world with every table, bucket and secret of the template.

    On moto a new moto account; on DynamoDB Local newly created tables there, and moto for
    the rest. Keys: `dynamodb` (a client on the engine), `engine`.
    """
    with engine_world(dynamodb_endpoint) as dynamodb:
        yield {"dynamodb": dynamodb, "engine": engine}


# ---------------------------------------------------------------- callers
class Client:
    """Calls the API as one user, the way the web app would."""

    _keys = itertools.count()

    def __init__(self, api: LocalApi, sub: str | None, groups: list[str] | None = None) -> None:
        self.api = api
        self.sub = sub
        self.groups = groups

    @property
    def claims(self) -> dict[str, Any] | None:
        return caller_claims(self.sub, self.groups)

    def get(self, path: str, **query: Any) -> ApiResponse:
        return self.api.request("GET", path, claims=self.claims, query={k: str(v) for k, v in query.items()})

    def post(
        self,
        path: str,
        body: Any = None,
        *,
        key: str | None = "auto",
        raw: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        all_headers = {"content-type": "application/json", **(headers or {})}
        if key == "auto":
            key = f"k-{next(self._keys)}-{uuid.uuid4().hex[:8]}"
        if key is not None:
            all_headers["idempotency-key"] = key
        payload = raw if raw is not None else json.dumps(body)
        return self.api.request("POST", path, claims=self.claims, headers=all_headers, body=payload)


@pytest.fixture
def api(aws: dict[str, Any]) -> LocalApi:
    return LocalApi(STACK)


@pytest.fixture
def user_id() -> str:
    return f"u-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def user(api: LocalApi, user_id: str) -> Client:
    return Client(api, user_id)


@pytest.fixture
def admin(api: LocalApi) -> Client:
    return Client(api, f"admin-{uuid.uuid4().hex[:8]}", ["admin", "support"])


@pytest.fixture
def anonymous(api: LocalApi) -> Client:
    return Client(api, None)
