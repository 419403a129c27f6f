"""The one local world (`infra.world.local_world`) and the routing bench shares with the tests.

The engine fixture's world is checked in test_engines.py; these build their own moto world, as
bench, chaos and `make run` do, so they run once (on the moto run).
"""

from __future__ import annotations

import os
from typing import Any

import boto3
import pytest

from infra.api import LocalApi, caller_claims
from infra.lambdas import Environment
from infra.template import LOCAL_REGION
from infra.world import ENDPOINT_VARS, local_environment, local_world, secret_named_by
from tests.conftest import STACK


def test_a_moto_world_has_every_resource_of_the_template_and_the_secrets_given() -> None:
    webhook_secret = secret_named_by(STACK, "STRIPE_WEBHOOK_SECRET_NAME")
    assert webhook_secret is not None
    assert secret_named_by(STACK, "NO_SUCH_VARIABLE") is None
    with local_world(STACK, secrets={webhook_secret: "whsec_world"}) as world:
        assert world.engine == "moto" and world.dynamodb_endpoint is None
        tables = set(STACK.table_names().values())
        assert set(world.dynamodb.list_tables()["TableNames"]) == tables
        buckets = {b["Name"] for b in boto3.client("s3", region_name=LOCAL_REGION).list_buckets()["Buckets"]}
        assert {STACK.physical_name(b) for b in STACK.of_type("AWS::S3::Bucket")} <= buckets
        secrets = boto3.client("secretsmanager", region_name=LOCAL_REGION)
        stored = secrets.get_secret_value(SecretId=STACK.physical_name(webhook_secret))["SecretString"]
        assert stored == "whsec_world"
        queues = boto3.client("sqs", region_name=LOCAL_REGION).list_queues().get("QueueUrls", [])
        assert len(queues) == len(STACK.of_type("AWS::SQS::Queue"))
        buses = boto3.client("events", region_name=LOCAL_REGION).list_event_buses()["EventBuses"]
        assert {STACK.physical_name(b) for b in STACK.of_type("AWS::Events::EventBus")} <= {b["Name"] for b in buses}


def test_an_endpoint_left_in_the_shell_never_takes_calls_away_from_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENDPOINT_VARS:
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    with local_world(STACK) as world:
        assert all(name not in os.environ for name in ENDPOINT_VARS)
        assert world.dynamodb.list_tables()["TableNames"]
    assert all(os.environ[name] == "http://127.0.0.1:9" for name in ENDPOINT_VARS)  # restored after


def test_an_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="engine must be one of"), local_world(STACK, "sqlite"):
        pass


def test_the_functions_environment_is_the_template_s_with_local_credentials() -> None:
    environment = local_environment(STACK, POWERTOOLS_LOG_LEVEL="ERROR")
    assert {k: environment[k] for k in STACK.environment() if k != "POWERTOOLS_LOG_LEVEL"} == {
        k: v for k, v in STACK.environment().items() if k != "POWERTOOLS_LOG_LEVEL"
    }
    assert environment["POWERTOOLS_LOG_LEVEL"] == "ERROR"
    assert environment["AWS_ACCESS_KEY_ID"] == "testing" and environment["AWS_REGION"] == LOCAL_REGION


def test_a_request_routed_to_a_given_environment_is_served_there_and_not_from_the_pool(
    aws: dict[str, Any],
) -> None:
    api = LocalApi(STACK)
    found = api.match("GET", "/v1/balance")
    assert found is not None
    environment = Environment(STACK.functions()[found[0].function])
    served: list[str] = []
    invoke = environment.invoke
    environment.invoke = lambda event: served.append(event["rawPath"]) or invoke(event)  # type: ignore[method-assign]

    response = api.request("GET", "/v1/balance", claims=caller_claims("u-world"), environment=environment)

    assert response.status == 200 and response.json["user_id"] == "u-world"
    assert served == ["/v1/balance"]
    assert all(not idle for idle in api.pool._idle.values())  # no pooled environment was made
    assert caller_claims(None) is None
    assert caller_claims("u-1", ["admin", "support"]) == {"sub": "u-1", "cognito:groups": "[admin support]"}
