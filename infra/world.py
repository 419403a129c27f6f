"""The one local world: the template's resources on a local engine, and the environment the functions read.

`local_world(stack, engine)` is how tests (tests/conftest.py), the local stack (infra.local),
bench and chaos get one: moto in process (`mock_aws`, made atomic per request), with DynamoDB
on moto or on AWS's DynamoDB Local (started here, or the one `dynamodb_endpoint` names), or
no moto at all (`endpoint`: whatever `AWS_ENDPOINT_URL` names). Every table, bucket, secret,
bus and queue that template.yaml declares is created. `local_environment(stack)` is what
Lambda would set for the functions (the template's variables), with local credentials.
"""

from __future__ import annotations

import contextlib
import copy
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.queues import create_queues
from infra.template import LOCAL_REGION, Stack

ENGINE_MOTO = "moto"
ENGINE_DYNAMODB_LOCAL = "dynamodb-local"
ENGINE_ENDPOINT = "endpoint"  # no moto: the endpoints AWS_ENDPOINT_URL names (LocalStack, a moto server)
ENGINES = (ENGINE_MOTO, ENGINE_DYNAMODB_LOCAL, ENGINE_ENDPOINT)
DYNAMODB_ENDPOINT_ENV_VAR = "AWS_ENDPOINT_URL_DYNAMODB"
ENDPOINT_VARS = (
    "AWS_ENDPOINT_URL",
    DYNAMODB_ENDPOINT_ENV_VAR,
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
)

# Credentials and region for local engines (moto, DynamoDB Local): never real ones.
LOCAL_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_REGION": LOCAL_REGION,
}

# What the functions read besides the template's variables: quiet tracing, never a real account.
LOCAL_FUNCTION_DEFAULTS = {**LOCAL_AWS_ENVIRONMENT, "POWERTOOLS_TRACE_DISABLED": "true"}

_MOTO_LOCK = threading.RLock()
_moto_patched = False


def make_moto_atomic() -> None:
    """Serialize moto's in-process dispatch, as DynamoDB applies each request atomically.

    moto is not thread-safe (DESIGN.md); one lock around `BotocoreStubber.__call__`
    restores per-request atomicity for concurrent tests and the local stack. Idempotent.
    """
    global _moto_patched
    if _moto_patched:
        return
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.__call__

    def locked_call(self: Any, event_name: str, request: Any, **kwargs: Any) -> Any:
        with _MOTO_LOCK:
            return original(self, event_name, request, **kwargs)

    BotocoreStubber.__call__ = locked_call  # type: ignore[method-assign]
    _moto_patched = True


@contextlib.contextmanager
def moto_lock() -> Iterator[None]:
    """Hold moto's dispatch lock: a consistent look at moto's state (infra.streams reads its stream records)."""
    with _MOTO_LOCK:
        yield


@contextlib.contextmanager
def environment_variable(name: str, value: str) -> Iterator[None]:
    """Set one environment variable for the duration of the block, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def create_tables(stack: Stack, dynamodb: Any) -> dict[str, str]:
    """Create every table the template declares (and its TTL); returns logical id -> name."""
    names = {}
    existing = set(dynamodb.list_tables().get("TableNames", []))
    for logical_id, definition in stack.table_definitions().items():
        name = definition["TableName"]
        names[logical_id] = name
        if name in existing:
            continue
        dynamodb.create_table(**definition)
        dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
        ttl_attribute = stack.table_ttl(logical_id)
        if ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
            )
    return names


def _create_each(
    stack: Stack, resource_type: str, create: Callable[[str], object], already_exists: type[Exception]
) -> dict[str, str]:
    """Create every resource of one type the template declares (an existing one is kept); logical id -> name."""
    names = {}
    for logical_id in stack.of_type(resource_type):
        name = stack.physical_name(logical_id)
        names[logical_id] = name
        with contextlib.suppress(already_exists):
            create(name)
    return names


def create_buckets(stack: Stack, s3: Any) -> dict[str, str]:
    """Create every S3 bucket the template declares; returns logical id -> name."""
    return _create_each(
        stack, "AWS::S3::Bucket", lambda name: s3.create_bucket(Bucket=name), s3.exceptions.BucketAlreadyOwnedByYou
    )


def create_secrets(stack: Stack, secretsmanager: Any, values: dict[str, str]) -> dict[str, str]:
    """Create each declared secret with the value given for its logical id (or a placeholder)."""
    names = {}
    for logical_id in stack.of_type("AWS::SecretsManager::Secret"):
        name = stack.physical_name(logical_id)
        names[logical_id] = name
        value = values.get(logical_id, "local-placeholder")
        try:
            secretsmanager.create_secret(Name=name, SecretString=value)
        except secretsmanager.exceptions.ResourceExistsException:
            secretsmanager.put_secret_value(SecretId=name, SecretString=value)
    return names


def create_event_buses(stack: Stack, events: Any) -> dict[str, str]:
    """Create every EventBridge bus the template declares; returns logical id -> name."""
    return _create_each(
        stack,
        "AWS::Events::EventBus",
        lambda name: events.create_event_bus(Name=name),
        events.exceptions.ResourceAlreadyExistsException,
    )


def drop_tables(stack: Stack, dynamodb: Any) -> None:
    for definition in stack.table_definitions().values():
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=definition["TableName"])


def create_resources(
    stack: Stack, secrets: Mapping[str, str] | None = None, *, client: Callable[[str], Any] | None = None
) -> None:
    """Every table, bucket, secret, bus and queue of the template.

    `client(service)` makes the clients (default: boto3's, on the current endpoints, local region).
    """
    client = client or _Clients()
    create_tables(stack, client("dynamodb"))
    create_buckets(stack, client("s3"))
    create_secrets(stack, client("secretsmanager"), dict(secrets or {}))
    create_event_buses(stack, client("events"))
    create_queues(stack, client("sqs"))


# ---------------------------------------------------------------- the environment
def local_environment(stack: Stack, **overrides: str) -> dict[str, str]:
    """What Lambda would set for the functions (the template's variables), with local credentials."""
    return {**LOCAL_FUNCTION_DEFAULTS, **stack.environment(), **overrides}


def use_local_environment(stack: Stack, **overrides: str) -> None:
    """Put `local_environment` into this process's environment (the handlers read it at import)."""
    os.environ.update(local_environment(stack, **overrides))


def secret_named_by(stack: Stack, variable: str) -> str | None:
    """The logical id of the template secret a function names in `variable` (its name or ARN), if any."""
    value = stack.environment().get(variable)
    for logical_id in stack.of_type("AWS::SecretsManager::Secret"):
        if value in (stack.physical_name(logical_id), stack.arn(logical_id)):
            return logical_id
    return None


@contextlib.contextmanager
def environment_without(names: tuple[str, ...]) -> Iterator[None]:
    """Unset `names` for the duration of the block, then restore them."""
    previous = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(previous)


# ---------------------------------------------------------------- the world
@dataclass(frozen=True)
class LocalWorld:
    """A world of the template: `dynamodb` is a client on its DynamoDB (moto's, DynamoDB Local, an endpoint)."""

    stack: Stack
    engine: str
    dynamodb: Any
    dynamodb_endpoint: str | None


def _mock_aws(dynamodb_endpoint: str | None) -> Any:
    """moto for every service, letting requests to `dynamodb_endpoint` (if any) through untouched."""
    from moto import mock_aws
    from moto.core.config import default_user_config

    if dynamodb_endpoint is None:
        return mock_aws()
    core = copy.deepcopy(default_user_config["core"])
    core["passthrough"] = {"urls": [re.escape(dynamodb_endpoint) + r"(/.*)?$"], "services": []}
    return mock_aws(config={"core": core})


@contextlib.contextmanager
def local_world(
    stack: Stack,
    engine: str = ENGINE_MOTO,
    *,
    dynamodb_endpoint: str | None = None,
    data_dir: str | Path | None = None,
    secrets: Mapping[str, str] | None = None,
    fresh_tables: bool = False,
    clients: Callable[[str], Any] | None = None,
) -> Iterator[LocalWorld]:
    """The template's world on `engine`, for the duration of the block.

    - `moto`: every service in moto's in-process `mock_aws` (a fresh account), made atomic.
    - `dynamodb-local`: DynamoDB on DynamoDB Local (the server at `dynamodb_endpoint`, else one
      started here, `data_dir` keeping its data), the rest on moto.
    - `endpoint`: no moto; every call goes where `AWS_ENDPOINT_URL` (and its per-service
      variants) point, and only the missing resources are created.

    `secrets` gives values by the secret's logical id (others hold a placeholder);
    `fresh_tables` drops the template's tables first (a DynamoDB Local shared between worlds);
    `clients(service)` makes the clients that create the resources (default: new boto3 clients on
    the current endpoints; the tests reuse theirs from one world to the next).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}")
    with contextlib.ExitStack() as scope:
        if engine == ENGINE_ENDPOINT:
            dynamodb_endpoint = os.environ.get(DYNAMODB_ENDPOINT_ENV_VAR) or os.environ.get("AWS_ENDPOINT_URL")
        else:
            # moto must see every call: an endpoint variable left in the shell would bypass it.
            scope.enter_context(environment_without(ENDPOINT_VARS))
            if engine == ENGINE_MOTO:
                dynamodb_endpoint = None
            elif dynamodb_endpoint is None:
                from infra.dynamodb_local import DynamoDBLocal

                dynamodb_endpoint = scope.enter_context(DynamoDBLocal(data_dir=data_dir)).endpoint_url
            if dynamodb_endpoint is not None:
                scope.enter_context(environment_variable(DYNAMODB_ENDPOINT_ENV_VAR, dynamodb_endpoint))
            make_moto_atomic()
            scope.enter_context(_mock_aws(dynamodb_endpoint))
        clients = clients or _Clients()
        dynamodb = clients("dynamodb")
        if engine == ENGINE_DYNAMODB_LOCAL and dynamodb.meta.endpoint_url != dynamodb_endpoint:
            raise RuntimeError(f"boto3 ignored {DYNAMODB_ENDPOINT_ENV_VAR}: {dynamodb.meta.endpoint_url}")
        if fresh_tables and engine == ENGINE_DYNAMODB_LOCAL:  # moto's account is new each time
            drop_tables(stack, dynamodb)
        create_resources(stack, secrets, client=clients)
        yield LocalWorld(stack, engine, dynamodb, dynamodb_endpoint)


class _Clients:
    """boto3 clients on the current endpoints in the local region, one per service."""

    def __init__(self) -> None:
        self._made: dict[str, Any] = {}

    def __call__(self, service: str) -> Any:
        import boto3

        if service not in self._made:
            self._made[service] = boto3.client(service, region_name=LOCAL_REGION)
        return self._made[service]
