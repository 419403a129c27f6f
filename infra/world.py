"""Build the template's world (tables, buckets, secrets) on any endpoint, and keep moto atomic."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from typing import Any

from infra.template import LOCAL_REGION, Stack

# Credentials and region for local engines (moto, DynamoDB Local): never real ones.
LOCAL_AWS_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": LOCAL_REGION,
    "AWS_REGION": LOCAL_REGION,
}

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


def create_buckets(stack: Stack, s3: Any) -> dict[str, str]:
    names = {}
    for logical_id in stack.of_type("AWS::S3::Bucket"):
        name = stack.physical_name(logical_id)
        names[logical_id] = name
        with contextlib.suppress(s3.exceptions.BucketAlreadyOwnedByYou):
            s3.create_bucket(Bucket=name)
    return names


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
    names = {}
    for logical_id in stack.of_type("AWS::Events::EventBus"):
        name = stack.physical_name(logical_id)
        names[logical_id] = name
        with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
            events.create_event_bus(Name=name)
    return names


def drop_tables(stack: Stack, dynamodb: Any) -> None:
    for definition in stack.table_definitions().values():
        with contextlib.suppress(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.delete_table(TableName=definition["TableName"])
