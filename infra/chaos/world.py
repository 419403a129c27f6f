"""The chaos run's world: the template's tables, buckets, secrets, buses and queues on moto, with
DynamoDB on moto or DynamoDB Local, and the environment the handlers read.

All of the run's set-up is here, in one place (`world` and `stripe_secret_values`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
from collections.abc import Iterator
from typing import Any

from infra.queues import create_queues
from infra.template import LOCAL_REGION, Stack
from infra.world import LOCAL_AWS_ENVIRONMENT

CHAOS_WELCOME_GRANT_TOKENS = 25  # the template's WelcomeGrantTokens for a run (default 0: no grant)


@contextlib.contextmanager
def world(engine: str, stack: Stack, secrets: dict[str, str]) -> Iterator[Any]:
    """Tables, buckets and secrets of the template on moto, with DynamoDB on `engine`."""
    import boto3
    from moto import mock_aws

    from infra.world import create_buckets, create_event_buses, create_secrets, create_tables, make_moto_atomic

    _environment_defaults(stack)
    make_moto_atomic()
    with contextlib.ExitStack() as stack_of_contexts:
        if engine == "dynamodb-local":
            from infra.dynamodb_local import DynamoDBLocal

            server = stack_of_contexts.enter_context(DynamoDBLocal())
            previous = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
            os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = server.endpoint_url
            stack_of_contexts.callback(_restore_env, "AWS_ENDPOINT_URL_DYNAMODB", previous)
        # The sign-up trigger grants welcome tokens in this world (the template's default is none).
        stack_of_contexts.callback(_restore_env, "WELCOME_GRANT_TOKENS", os.environ.get("WELCOME_GRANT_TOKENS"))
        os.environ["WELCOME_GRANT_TOKENS"] = str(CHAOS_WELCOME_GRANT_TOKENS)
        stack_of_contexts.enter_context(mock_aws())
        dynamodb = boto3.client("dynamodb", region_name=LOCAL_REGION)
        create_tables(stack, dynamodb)
        create_buckets(stack, boto3.client("s3", region_name=LOCAL_REGION))
        create_secrets(stack, boto3.client("secretsmanager", region_name=LOCAL_REGION), secrets)
        create_event_buses(stack, boto3.client("events", region_name=LOCAL_REGION))
        create_queues(stack, boto3.client("sqs", region_name=LOCAL_REGION))
        yield dynamodb


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _environment_defaults(stack: Stack) -> None:
    defaults = {
        **LOCAL_AWS_ENVIRONMENT,
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_LOG_LEVEL": "CRITICAL",
    }
    for name, value in {**stack.environment(), **defaults}.items():
        os.environ.setdefault(name, value)


def stripe_secret_values(stack: Stack, seed: int) -> tuple[dict[str, str], str | None]:
    """A webhook signing secret for the secret the template hands to the Stripe function, if any."""
    for spec in stack.functions().values():
        name = spec.environment.get("STRIPE_WEBHOOK_SECRET_NAME")
        if not name:
            continue
        for logical_id in stack.of_type("AWS::SecretsManager::Secret"):
            if name in (stack.physical_name(logical_id), stack.arn(logical_id)):
                secret = "whsec_" + base64.b32encode(hashlib.sha256(f"chaos:{seed}".encode()).digest()).decode()[:32]
                return {logical_id: secret}, secret
    return {}, None
