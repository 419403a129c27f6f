"""`/docs` in a real browser: headless Chromium loads Swagger UI from the local stack and lists every route."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.template import Stack
from tests.integration.local_stack import RunningStack, http, local_stack

pytestmark = pytest.mark.slow

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
APT_TIMEOUT_S = 600
BROWSER_TIMEOUT_S = 120
# Quiet, offline Chromium: the machine's network is closed, so no background fetches at all.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


def _find_chromium() -> str | None:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _install_chromium() -> str:
    """Debian's `chromium`, installed if missing and this user may (root with apt-get)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "chromium is not installed and apt-get is not available to this user"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(command)}` did not finish in {APT_TIMEOUT_S} s"
        if done.returncode != 0:
            return f"`{' '.join(command)}` failed: {done.stderr.strip()[-300:]}"
    return "apt-get install chromium ran but no chromium binary is on PATH"


@pytest.fixture(scope="module")
def chromium() -> str:
    found = _find_chromium()
    if found is None:
        reason = _install_chromium()
        found = _find_chromium()
        if found is None:
            pytest.skip(f"headless Chromium not available: {reason} (Debian: apt-get install -y chromium)")
    return found


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    with local_stack(devkey_dir=tmp_path_factory.mktemp("devkey")) as running:
        yield running


def render(chromium: str, url: str, profile: Path, *extra: str) -> str:
    """The page's DOM after its scripts ran (virtual time lets Swagger UI fetch and render)."""
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=20000", *extra, url],
        capture_output=True,
        text=True,
        timeout=BROWSER_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


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
