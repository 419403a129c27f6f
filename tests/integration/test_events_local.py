"""`make run` publishes every entry to its local bus, and `tokenledger events --follow` prints it at once.

The real local stack (a subprocess, as `make run` starts it) on the selected engine: moto
(its stream records feed the publisher) or DynamoDB Local (its DynamoDB Streams feed it).
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from infra import cli, devauth
from infra.cli.client import ApiClient
from infra.cli.commands import events as events_command
from infra.stripe_events import checkout_completed_event, local_catalog
from tests.integration.local_stack import RunningStack, http, local_stack

LATENCY_S_MAX = 1.0


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, engine: str, dynamodb_endpoint: str | None
) -> Iterator[RunningStack]:
    directory = tmp_path_factory.mktemp("devkey")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(devauth.DEVKEY_ENV_VAR, str(directory))
        if dynamodb_endpoint is not None:  # the worker's DynamoDB Local, as an external one
            patch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint)
        with local_stack("--engine", engine, devkey_dir=directory) as running:
            yield running


def follow(url: str, user: str, found: list[tuple[float, str]]) -> threading.Thread:
    """`tokenledger events --follow --all --user USER --max 1` in a thread, each line timed."""
    args = argparse.Namespace(client=ApiClient(url), follow=True, all=True, user=user, type=None, max=1, json=False)
    thread = threading.Thread(
        target=events_command.events, args=(args,), kwargs={"out": lambda line: found.append((time.monotonic(), line))}
    )
    thread.start()
    return thread


def purchase(url: str, user: str, secret: str) -> None:
    """A paid `checkout.session.completed` for the starter package, as Stripe delivers it."""
    package = next(p for p in local_catalog() if p["package_id"] == "starter")
    ApiClient(url).post_stripe_event(checkout_completed_event(user, package), secret)


def first_line(url: str, user: str, secret: str) -> tuple[float, str]:
    """Seconds from sending a purchase to `events --follow` printing its event, and the line."""
    found: list[tuple[float, str]] = []
    follower = follow(url, user, found)
    time.sleep(0.3)  # the follower is waiting on the bus (it asks for --all, so nothing is missed anyway)
    sent = time.monotonic()
    purchase(url, user, secret)
    follower.join(timeout=15)
    assert not follower.is_alive() and found, f"no event for {user}"
    ((seen, line),) = found
    return seen - sent, line


def test_a_purchase_shows_up_in_events_follow_within_a_second(
    stack: RunningStack, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(devauth.DEVKEY_ENV_VAR, str(stack.devkey_dir))
        secret = devauth.stripe_webhook_secret()
    cold, _ = first_line(stack.url, f"u-{uuid.uuid4().hex[:10]}", secret)  # Lambda cold starts on the way
    user = f"u-{uuid.uuid4().hex[:10]}"
    warm, line = first_line(stack.url, user, secret)
    assert "Entry Created" in line and user in line and "purchase" in line and "seq 1" in line
    with capsys.disabled():
        print(f"\nfrom sending a purchase to `events --follow` printing it: {warm:.3f} s (first, cold: {cold:.3f} s)")
    assert warm < LATENCY_S_MAX, f"printed {warm:.2f} s after the purchase was sent"

    capsys.readouterr()
    assert cli.main(["--url", stack.url, "--json", "events", "--user", user, "--type", "Entry Created"]) == 0
    (envelope,) = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert '"source": "tokenledger"' in envelope and '"seq": 1' in envelope
    assert cli.main(["--url", stack.url, "events", "--user", user]) == 0
    assert "purchase +" in capsys.readouterr().out


def test_following_the_bus_is_for_admins_and_refuses_bad_queries(stack: RunningStack) -> None:
    events_url = stack.url + "/_local/events"
    assert http("GET", events_url)[0] == 401
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(devauth.DEVKEY_ENV_VAR, str(stack.devkey_dir))
        user_token = devauth.mint("mallory", [])
        admin_token = devauth.mint("ops", ["admin"])
    assert http("GET", events_url, headers={"authorization": f"Bearer {user_token}"})[0] == 403
    admin = {"authorization": f"Bearer {admin_token}"}
    for query in ("after=-1", "after=x", "wait=9999", "wait=1e9", "user_id=" + "u" * 200):
        status, headers, body = http("GET", f"{events_url}?{query}", headers=admin)
        assert status == 422 and headers["content-type"] == "application/problem+json", query
        assert body["code"] == "validation_error"
    status, _, body = http("GET", f"{events_url}?after=now&wait=0", headers=admin)
    assert status == 200 and body["events"] == [] and isinstance(body["next"], int)


def test_events_without_a_stack_is_a_connection_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--url", "http://127.0.0.1:9", "events"]) == 2
    assert "cannot reach" in capsys.readouterr().err
    assert os.environ.get("AWS_ENDPOINT_URL") is None
