"""The Cognito PostConfirmation trigger: opens the account once, returns the event unchanged."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from infra.lambdas import Environment
from tests.conftest import STACK
from tests.invariants import assert_account_consistent, chain_of


def confirmation_event(sub: str, trigger: str = "PostConfirmation_ConfirmSignUp") -> dict[str, Any]:
    return {
        "version": "1",
        "region": "us-east-1",
        "userPoolId": "us-east-1_example",
        "userName": sub,
        "callerContext": {"awsSdkVersion": "aws-sdk-unknown-unknown", "clientId": "example-client"},
        "triggerSource": trigger,
        "request": {
            "userAttributes": {
                "sub": sub,
                "email": "new.user@example.com",
                "email_verified": "true",
                "cognito:user_status": "CONFIRMED",
            }
        },
        "response": {},
    }


def trigger_environment(monkeypatch: pytest.MonkeyPatch, welcome_grant_tokens: int) -> Environment:
    """A cold start of the trigger with WELCOME_GRANT_TOKENS set as the template would."""
    spec = STACK.functions()["PostConfirmationFunction"]
    assert spec.environment["WELCOME_GRANT_TOKENS"] == "0"  # the template's default
    monkeypatch.setenv("WELCOME_GRANT_TOKENS", str(welcome_grant_tokens))
    return Environment(spec)


def account_item(aws: dict[str, Any], user_id: str) -> dict[str, Any] | None:
    table = STACK.physical_name("AccountsTable")
    item: dict[str, Any] | None = (
        aws["dynamodb"].get_item(TableName=table, Key={"user_id": {"S": user_id}}, ConsistentRead=True).get("Item")
    )
    return item


def test_the_trigger_is_declared_on_the_user_pool() -> None:
    resource = STACK.resources["PostConfirmationFunction"]
    events = resource["Properties"]["Events"]
    assert {"Type": "Cognito", "Properties": {"UserPool": {"Ref": "UserPool"}, "Trigger": "PostConfirmation"}} in (
        events.values()
    )
    assert STACK.template["Parameters"]["WelcomeGrantTokens"]["Default"] == 0


def test_without_a_welcome_grant_it_opens_an_empty_account(monkeypatch: pytest.MonkeyPatch, aws: Any) -> None:
    environment = trigger_environment(monkeypatch, 0)
    sub = str(uuid.uuid4())
    event = confirmation_event(sub)

    for _ in range(2):  # Cognito may deliver the trigger again
        assert environment.invoke(copy.deepcopy(event)) == event

    item = account_item(aws, sub)
    assert item is not None and item["balance"] == {"N": "0"} and item["version"] == {"N": "0"}
    assert assert_account_consistent(aws["dynamodb"], STACK, sub) == {"balance": 0, "version": 0, "entries": 0}


def test_the_welcome_grant_is_written_once_however_often_the_trigger_runs(
    monkeypatch: pytest.MonkeyPatch, aws: Any
) -> None:
    sub = str(uuid.uuid4())
    event = confirmation_event(sub)
    first, second = trigger_environment(monkeypatch, 25), trigger_environment(monkeypatch, 25)

    assert first.invoke(copy.deepcopy(event)) == event
    assert second.invoke(copy.deepcopy(event)) == event  # a re-delivery, on another environment
    assert first.invoke(copy.deepcopy(event)) == event

    chain = chain_of(aws["dynamodb"], STACK, sub)
    assert [(e["seq"], e["amount"]) for e in chain] == [(1, 25)]
    assert assert_account_consistent(aws["dynamodb"], STACK, sub) == {"balance": 25, "version": 1, "entries": 1}


def test_a_changed_setting_does_not_grant_again(monkeypatch: pytest.MonkeyPatch, aws: Any) -> None:
    sub = str(uuid.uuid4())
    trigger_environment(monkeypatch, 25).invoke(confirmation_event(sub))
    trigger_environment(monkeypatch, 40).invoke(confirmation_event(sub))
    assert assert_account_consistent(aws["dynamodb"], STACK, sub) == {"balance": 25, "version": 1, "entries": 1}


def test_the_grant_names_who_and_why(monkeypatch: pytest.MonkeyPatch, api: Any, aws: Any) -> None:
    from tests.conftest import Client

    sub = str(uuid.uuid4())
    trigger_environment(monkeypatch, 10).invoke(confirmation_event(sub))
    entry = Client(api, sub).get("/v1/transactions").json["items"][0]
    assert (entry["type"], entry["amount"], entry["balance_after"]) == ("grant", 10, 10)
    assert entry["reason"] and entry["actor"] == "system:post-confirmation"


def test_an_existing_account_is_left_as_it_is(monkeypatch: pytest.MonkeyPatch, api: Any, aws: Any) -> None:
    from tests.conftest import Client

    sub = str(uuid.uuid4())
    admin = Client(api, "admin-1", ["admin"])
    assert admin.post(f"/v1/admin/accounts/{sub}/entries", {"type": "grant", "amount": 8, "reason": "r"}).status == 201
    trigger_environment(monkeypatch, 0).invoke(confirmation_event(sub))
    assert assert_account_consistent(aws["dynamodb"], STACK, sub) == {"balance": 8, "version": 1, "entries": 1}


def test_a_password_reset_confirmation_opens_nothing(monkeypatch: pytest.MonkeyPatch, aws: Any) -> None:
    sub = str(uuid.uuid4())
    event = confirmation_event(sub, trigger="PostConfirmation_ConfirmForgotPassword")
    assert trigger_environment(monkeypatch, 25).invoke(copy.deepcopy(event)) == event
    assert account_item(aws, sub) is None
