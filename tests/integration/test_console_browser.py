"""The web console in a real browser: headless Chromium drives `/console` on the local stack.

The stack is `make run`'s (`infra.local.serving`: the same server, the template's routes, the
real handlers) in this process, so a test can also reach behind it (drift an account in moto)
the way a bug would. Screenshots go to `artifacts/console/` (gitignored; docs/console.md shows
copies). Kept to two scenarios that each walk several pages: a user, an operator.
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from infra.cli import ApiClient, local_catalog
from infra.template import LOCAL_REGION
from tests.integration.browser import Browser, chromium_or_skip
from tests.integration.local_stack import http

pytestmark = pytest.mark.slow

PHONE_WIDTH = 390


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Any]]:
    """`make run`'s server on a free port, in this process; the environment is restored afterwards."""
    from infra.local import serving

    saved = dict(os.environ)
    os.environ["TOKENLEDGER_DEVKEY_DIR"] = str(tmp_path_factory.mktemp("devkey"))
    try:
        with serving(0) as (server, local):
            yield server, local
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def browser(served: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    with Browser(chromium_or_skip(), tmp_path_factory.mktemp("profile")) as page:
        yield page


def ready(browser: Browser, route: str) -> None:
    """Wait until the console rendered `route` (app.js marks main[data-ready] when a page is done)."""
    browser.wait(f"document.querySelector('#main').dataset.ready === {json.dumps(route)}", what=route)


UNLABELLED = (
    "[...document.querySelectorAll('main input, main select, main textarea, main button')]"
    ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.innerText.trim())"
    ".map(e => e.outerHTML.slice(0, 80))"
)


def assert_labelled(browser: Browser) -> None:
    """Every control on the page has a label (or a text, for buttons): screen readers can name it."""
    assert browser.js(UNLABELLED) == []


def sign_in(browser: Browser, url: str, user: str, *, admin: bool = False) -> None:
    """The dev user picker, by keyboard: the user field has focus, type, (space on the admin box), Enter."""
    browser.goto(f"{url}/console/")
    browser.js("sessionStorage.clear()")
    browser.goto(f"{url}/console/?fresh={uuid.uuid4().hex}#/")  # a new query: a full load, no session
    browser.wait("document.activeElement && document.activeElement.name === 'user'", what="focus on the user field")
    browser.js(f"document.activeElement.value = {json.dumps(user)}")
    if admin:
        browser.key("Tab")
        browser.wait("document.activeElement.name === 'admin'", what="Tab moves to the admin checkbox")
        browser.key(" ", code="Space", text=" ")
        browser.wait("document.activeElement.checked", what="space checks it")
        browser.js("document.querySelector('#picker input[name=user]').focus()")
    browser.key("Enter", text="\r")
    ready(browser, "#/")
    assert browser.text("#signed-in-as") == user


def test_a_user_buys_tokens_commits_and_sees_balance_history_and_chart(
    served: tuple[Any, Any], browser: Browser, tmp_path: Path
) -> None:
    server, _ = served
    url = server.url
    user = f"dana-{uuid.uuid4().hex[:6]}"
    package = local_catalog()[0]
    client = ApiClient(url)

    sign_in(browser, url, user)

    assert browser.text("#balance").startswith("0")
    assert "Low balance" in browser.text("#main"), "a balance under LowBalanceTokens shows its low state"
    nav = browser.text("#nav")
    assert "History" in nav and "Reconciliation" not in nav, "a user sees no operator pages"

    browser.goto(f"{url}/console/#/buy")
    ready(browser, "#/buy")
    assert package["name"] in browser.text("#main")
    browser.click(f"button[data-package={json.dumps(package['package_id'])}]")
    # The local stack plays Stripe: its checkout page, then Pay sends the signed webhook and redirects back.
    browser.wait("location.pathname.startsWith('/checkout/cs_')", what="the local checkout page")
    browser.click("#pay")
    credited = browser.wait("document.querySelector('#new-balance')?.innerText", what="the new balance", timeout_s=20)
    assert credited.replace(",", "") == str(package["tokens"])
    browser.screenshot("console/user-buy")

    browser.goto(f"{url}/console/#/history")
    ready(browser, "#/history")
    assert "1 entries" in browser.text("#history-state")
    assert_labelled(browser)
    client.commit(user, "p-console-demo", 25)
    browser.click("#refresh")
    browser.wait("document.querySelectorAll('#history tbody tr').length === 2", what="the commitment in the history")
    newest = browser.js("[...document.querySelectorAll('#history tbody tr')[0].cells].map(c => c.innerText)")
    assert "commitment" in newest and "-25" in newest
    assert f"{package['tokens'] - 25:,}" in newest, "the running balance after the commitment"
    browser.screenshot("console/user-history")

    # Infinite scroll on the cursor: 20 more commitments are two pages; the second comes on scrolling.
    for number in range(20):
        client.commit(user, f"p-scroll-{number}", 1)
    browser.click("#refresh")
    browser.wait("document.querySelectorAll('#history tbody tr').length === 20", what="the first page")
    assert "scroll for more" in browser.text("#history-state")
    browser.js("window.scrollTo(0, document.body.scrollHeight)")
    browser.wait("document.querySelectorAll('#history tbody tr').length === 22", what="the next page on scrolling")
    assert "22 entries, all loaded" in browser.text("#history-state")
    seqs = browser.js("[...document.querySelectorAll('#history tbody tr')].map(r => Number(r.cells[1].innerText))")
    assert seqs == list(range(22, 0, -1)), "newest first, no entry twice or missing across pages"

    # The statement, as JSON then CSV: the last 30 days, saved by the browser.
    downloads = tmp_path / "downloads"
    browser.downloads_to(downloads)
    for fmt, suffix in (("json", ".json"), ("csv", ".csv")):
        browser.js(f"document.querySelector('#main select[name=format]').value = '{fmt}'")
        browser.click("#main form[aria-label=Statement] button[type=submit]")
        saved = browser.wait(
            f"document.querySelector('#stmt-out .notice.ok')?.innerText.includes('{suffix}') && "
            "document.querySelector('#stmt-out .notice.ok').innerText",
            what=f"the {fmt} statement",
        )
        assert "22 entries" in saved, saved
        name = re.search(r"Saved (\S+?):", saved).group(1)  # type: ignore[union-attr]
        path = downloads / name
        for _ in range(50):  # the browser writes the file a moment after the click
            if path.exists():
                break
            time.sleep(0.1)
        body = path.read_text()
        if fmt == "json":
            statement = json.loads(body)
            assert len(statement["entries"]) == 22 and statement["closing_balance"] == package["tokens"] - 45
        else:
            assert len(body.strip().splitlines()) == 23, "a header row and one row per entry"

    browser.goto(f"{url}/console/#/")
    ready(browser, "#/")
    assert browser.text("#balance").replace(",", "").startswith(str(package["tokens"] - 45))
    browser.wait("document.querySelector('#main canvas')", what="the balance chart")
    browser.screenshot("console/user-balance")

    browser.viewport(PHONE_WIDTH, 844, mobile=True)
    try:
        ready(browser, "#/")
        browser.goto(f"{url}/console/#/history")
        ready(browser, "#/history")
        width = browser.js("document.documentElement.scrollWidth")
        assert width <= PHONE_WIDTH, f"the page scrolls sideways at phone width ({width}px)"
        browser.screenshot("console/user-history-phone")
    finally:
        browser.viewport(1200, 900)
    assert browser.errors == []


def drift(user_id: str, balance: int) -> None:
    """A bug's work: the stored balance moved without an entry (moto, behind the API)."""
    table = os.environ["ACCOUNTS_TABLE"]
    boto3.client("dynamodb", region_name=LOCAL_REGION).update_item(
        TableName=table,
        Key={"user_id": {"S": user_id}},
        UpdateExpression="SET balance = :b",
        ExpressionAttributeValues={":b": {"N": str(balance)}},
    )


def test_an_operator_runs_a_reconciliation_sees_it_charted_and_repairs_an_account(
    served: tuple[Any, Any], browser: Browser
) -> None:
    server, local = served
    url = server.url
    victim = f"erin-{uuid.uuid4().hex[:6]}"
    ApiClient(url).admin_entry(victim, "grant", 300, reason="console test")
    drift(victim, 999)

    sign_in(browser, url, "ops", admin=True)
    browser.goto(f"{url}/console/#/ops/reports")
    ready(browser, "#/ops/reports")
    runs_before = browser.js("document.querySelectorAll('#runs tbody tr').length")
    browser.click("#run-reconcile")
    browser.wait(
        f"document.querySelectorAll('#runs tbody tr').length === {runs_before + 1}", what="the run in the list"
    )
    ready(browser, "#/ops/reports")
    browser.wait("document.querySelector('#main canvas')", what="the trend chart")
    assert "findings" in browser.text("#latest")
    finding = browser.text("#findings tbody")
    assert victim in finding
    browser.screenshot("console/ops-findings")

    browser.click(f"#findings a[href$={json.dumps(victim)}]")
    ready(browser, f"#/ops/accounts/{victim}")
    audit = browser.text("#audit")
    assert "inconsistent" in audit and "stored 999" in audit and "computed from the chain 300" in audit
    if local.api.match("GET", f"/v1/admin/accounts/{victim}/statement") is None:  # not on this server (yet)
        browser.wait(
            "document.querySelector('#main').innerText.includes(\"statement is not available on this server\")"
        )
    else:
        browser.wait("document.querySelectorAll('#account-entries tbody tr').length === 1", what="the entries")
    browser.fill("#main input[name=reason]", "drift found by the console test")
    browser.js("document.querySelector('#main input[name=confirm]').click()")
    browser.screenshot("console/ops-repair")
    browser.click("#repair")
    repaired = browser.wait("document.querySelector('#account .notice.ok')?.innerText", what="the repair's answer")
    assert re.search(r"999 → 300", repaired), repaired
    browser.wait(
        "document.querySelector('#audit')?.innerText.includes('consistent') && "
        "!document.querySelector('#audit').innerText.includes('inconsistent')",
        what="the audit after",
    )
    assert browser.text("#account-balance") == "300"

    # A batch: the preview shows the exact entries; submitting writes them, all or nothing.
    browser.goto(f"{url}/console/#/ops/batch")
    ready(browser, "#/ops/batch")
    browser.fill("#main textarea[name=operations]", f"{victim}, grant, 20\n{victim}, adjustment, -5")
    browser.fill("#main input[name=reason]", "console batch")
    browser.click("#main form button[type=submit]")
    rows = browser.wait(
        "document.querySelectorAll('#batch-ops tbody tr').length === 2 && "
        "[...document.querySelectorAll('#batch-ops tbody tr')].map(r => r.innerText)"
    )
    assert "grant" in rows[0] and "+20" in rows[0] and "adjustment" in rows[1] and "-5" in rows[1]
    assert_labelled(browser)
    browser.click("#submit-batch")
    assert "Written: 2 entries" in browser.text("#batch-preview .notice.ok")
    assert "315" in browser.text("#batch-balances"), "the new balance: 300 + 20 - 5"

    # A reversal from the account's entries: the preview names the entry and the compensating amount.
    browser.goto(f"{url}/console/#/ops/accounts/{victim}")
    ready(browser, f"#/ops/accounts/{victim}")
    browser.js(
        "[...document.querySelectorAll('#account-entries tbody tr')].find(r => r.innerText.includes('+20'))"
        ".querySelector('a[href*=entry_id]').click()"
    )
    ready(browser, "#/ops/reversal")
    browser.fill("#main input[name=reason]", "console test: granted by mistake")
    browser.click("#main form button[type=submit]")
    preview = browser.text("#reversal-preview")
    assert "A reversal entry of -20 tokens" in preview and "+20" in preview
    browser.click("#submit-reversal")
    reversed_ = browser.text("#reversal-preview .notice.ok")
    assert "Reversed: -20 tokens, balance now 295" in reversed_, reversed_

    if local.api.match("POST", "/v1/admin/predictions/p/close") is not None:
        settle_a_prediction(browser, url)

    browser.goto(f"{url}/console/#/ops/reports")
    ready(browser, "#/ops/reports")
    browser.click("#run-reconcile")
    browser.wait(f"document.querySelectorAll('#runs tbody tr').length === {runs_before + 2}")
    ready(browser, "#/ops/reports")
    assert "healthy" in browser.text("#latest")
    browser.wait("document.querySelector('#main canvas')", what="the trend chart, two runs now")
    browser.screenshot("console/ops-reports")
    assert browser.errors == []


def settle_a_prediction(browser: Browser, url: str) -> None:
    """Close a prediction, preview its payouts, settle it and watch the progress reach completed."""
    client = ApiClient(url)
    gina, prediction = f"gina-{uuid.uuid4().hex[:6]}", f"p-console-{uuid.uuid4().hex[:6]}"
    client.admin_entry(gina, "grant", 100, reason="console test")
    client.commit(gina, prediction, 30)

    browser.goto(f"{url}/console/#/ops/predictions?id={prediction}")
    ready(browser, "#/ops/predictions")
    browser.click("#close-prediction")
    browser.wait("document.querySelector('#main').innerText.includes('new commitments are refused')", what="closed")
    browser.fill("#main textarea[name=payouts]", f"{gina}, 30")
    browser.fill("#main input[name=reason]", "console test: gina won")
    browser.click("#main form[aria-label=Settle] button[type=submit]")
    preview = browser.text("#settlement-preview table")
    assert gina in preview and "+30" in preview
    assert_labelled(browser)
    browser.click("#submit-settlement")
    browser.wait(
        "document.querySelector('#prediction-status .badge')?.innerText === 'completed'",
        what="the settlement completed",
        timeout_s=30,
    )
    progress = browser.js(
        "[document.querySelector('#settlement-progress').value, document.querySelector('#settlement-progress').max]"
    )
    assert progress[0] == progress[1], "the progress bar is full"
    browser.screenshot("console/ops-settlement")
    assert client.balance(gina)["balance"] == 100, "100 - 30 committed + 30 paid out"


# ---------------------------------------------------------------- the server side, without a browser
def test_console_files_come_from_this_server_with_a_strict_csp(served: tuple[Any, Any]) -> None:
    server, _ = served
    status, headers, page = http("GET", f"{server.url}/console/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    sources = re.findall(r'(?:src|href)="([^"#]+)"', page)
    assert sources and all(s.startswith("/") for s in sources), "nothing from another origin (no CDN)"
    assert {"/console/vendor/uPlot.iife.min.js", "/console/vendor/uPlot.min.css", "/console/js/app.js"} <= set(sources)
    for source in sources:
        assert http("GET", server.url + source)[0] == 200, source
    assert http("GET", f"{server.url}/console")[0] in (200, 302)


@pytest.mark.parametrize(
    "path",
    [
        "/console/../template.yaml",
        "/console/js/../../infra/devauth.py",
        "/console/%2e%2e/README.md",
        "/console/.git/config",
        "/console/vendor/package.json",
        "/console/js/app.py",
    ],
)
def test_nothing_outside_the_console_folder_is_served(served: tuple[Any, Any], path: str) -> None:
    status, headers, _ = http("GET", served[0].url + path)
    assert status == 404 and headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"user": ""}',
        b'{"user": "a b"}',
        b'{"user": "x", "admin": "yes"}',
        b'{"user": "' + b"a" * 200 + b'"}',
        b'{"user": "x", "pad": "' + b"y" * 5000 + b'"}',
    ],
)
def test_the_dev_token_helper_refuses_hostile_bodies_with_422(served: tuple[Any, Any], body: bytes) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(f"{served[0].url}/console/dev/token", data=body, method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 422
    assert json.loads(refused.value.read())["code"] == "validation_error"


def test_a_dev_token_works_on_the_api_and_only_loopback_clients_get_one(served: tuple[Any, Any]) -> None:
    from infra.console import is_loopback

    url = served[0].url
    status, _, body = http("POST", f"{url}/console/dev/token", body={"user": "frank", "admin": False})
    assert status == 200 and body["user"] == "frank"
    status, _, balance = http("GET", f"{url}/v1/balance", headers={"authorization": f"Bearer {body['token']}"})
    assert status == 200 and balance["user_id"] == "frank"
    status, _, _ = http("GET", f"{url}/v1/admin/reports", headers={"authorization": f"Bearer {body['token']}"})
    assert status == 403
    assert is_loopback("127.0.0.1") and is_loopback("::1")
    assert not is_loopback("192.168.1.20") and not is_loopback("10.0.0.1") and not is_loopback("not-an-ip")


def test_screenshots_are_artifacts_not_sources() -> None:
    ignored = Path(__file__).resolve().parents[2].joinpath(".gitignore").read_text().split()
    assert "artifacts/" in ignored
