"""`/docs` in a real browser: headless Chromium loads Swagger UI from the local stack and lists every route."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.template import Stack
from tests.integration.browser import chromium_or_skip, render
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
