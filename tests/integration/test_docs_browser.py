"""`/docs` in a real browser: headless Chromium loads Swagger UI from the local stack and lists every route."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.template import Stack
from tests.integration.browser import Browser, chromium_or_skip, render
from tests.integration.local_stack import RunningStack, http, local_stack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_or_skip()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(devkey_dir=tmp_path_factory.mktemp("devkey")) as running:
        yield running


def test_docs_page_renders_every_route_of_the_template(stack: RunningStack, chromium: str, tmp_path: Path) -> None:
    dom = render(chromium, f"{stack.url}/docs", tmp_path / "profile", "--dump-dom")

    rendered = set(re.findall(r'data-path="([^"]+)"', dom))
    expected = {route.path for route in Stack().routes()}
    assert rendered == expected, f"missing: {expected - rendered}, unexpected: {rendered - expected}"
    assert 'class="swagger-ui' in dom
    assert "Authorize" in dom, "the bearer-token security scheme offers the Authorize button"
    assert "Failed to load API definition" not in dom


def test_docs_assets_come_from_this_server_not_a_cdn(stack: RunningStack) -> None:
    status, headers, page = http("GET", f"{stack.url}/docs")

    assert status == 200
    assert headers["content-type"].startswith("text/html")
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, "the page loads Swagger UI's script and style"
    assert all(source.startswith("/") for source in sources), sources
    for source in sources:
        assert http("GET", stack.url + source)[0] == 200, source


# Clicks what a person clicks: Authorize (by Swagger UI's own call), the operation, "Try it out", "Execute".
TRY_IT_OUT_SCRIPT = """
(async () => {
  const sleep = ms => new Promise(resolve => setTimeout(resolve, ms));
  const until = async (find, what) => {
    for (let i = 0; i < 600; i++) { const found = find(); if (found) return found; await sleep(50); }
    throw new Error("timed out waiting for " + what);
  };
  await until(() => window.ui && document.querySelector(".opblock"), "the operations");
  window.ui.preauthorizeApiKey("bearerAuth", TOKEN);
  const block = await until(() => [...document.querySelectorAll(".opblock-post")]
    .find(b => b.querySelector('[data-path="PATH"]')), "POST PATH");
  (block.querySelector(".opblock-summary-control") || block.querySelector(".opblock-summary")).click();
  (await until(() => block.querySelector(".try-out__btn"), "Try it out")).click();
  const key = await until(() => block.querySelector('tr[data-param-name="Idempotency-Key"] input'), "the key input");
  const body = await until(() => block.querySelector(".body-param__text"), "the body editor");
  const sent = {key: key.value, body: body.value};
  (await until(() => block.querySelector(".btn.execute"), "Execute")).click();
  const live = ".live-responses-table tr.response ";
  const status = await until(() => block.querySelector(live + ".response-col_status"), "the answer");
  const answer = block.querySelector(live + ".response-col_description pre");
  return {sent, status: status.textContent.trim(), answer: answer ? answer.textContent : null};
})()
"""


def test_try_it_out_of_a_commitment_succeeds_with_the_documented_examples(
    stack: RunningStack, chromium: str, tmp_path: Path
) -> None:
    from infra import devauth

    user = f"u-{uuid.uuid4().hex[:10]}"
    admin = {"authorization": "Bearer " + devauth.mint("ops", ["admin"], directory=stack.devkey_dir)}
    granted = http(
        "POST",
        f"{stack.url}/v1/admin/accounts/{user}/entries",
        headers={**admin, "idempotency-key": f"grant-{user}"},
        body={"type": "grant", "amount": 100, "reason": "try it out"},
    )
    assert granted[0] == 201, granted
    token = devauth.mint(user, directory=stack.devkey_dir)

    with Browser(chromium, tmp_path / "profile") as browser:
        browser.goto(f"{stack.url}/docs")
        result = browser.js(TRY_IT_OUT_SCRIPT.replace("TOKEN", json.dumps(token)).replace("PATH", "/v1/commitments"))

    assert result["sent"]["key"] == "try-it-0001", "the Idempotency-Key input is filled with the example"
    sent = json.loads(result["sent"]["body"])
    assert result["status"] == "201", result
    answer = json.loads(result["answer"])
    assert answer["entry"]["type"] == "commitment"
    assert (answer["entry"]["amount"], answer["balance"]) == (-sent["amount"], 100 - sent["amount"])
    status, _, balance = http("GET", f"{stack.url}/v1/balance", headers={"authorization": "Bearer " + token})
    assert (status, balance["balance"], balance["version"]) == (200, 100 - sent["amount"], 2)
